"""The table of agent kinds (rlm_tasks/agents/): one protocol, one registration, nothing compares a kind outside."""

from __future__ import annotations

import ast
import json
import types
from pathlib import Path

import pytest

import rlm_tasks
from rlm_tasks import agents
from rlm_tasks.agents import KINDS
from rlm_tasks.agents.base import ROOT_PLACEHOLDER, Usage, classify
from rlm_tasks.config import defaults
from rlm_tasks.config.records import AgentSpec
from rlm_tasks.resources import SCHEMA_DIR

PACKAGE = Path(rlm_tasks.__file__).parent


def test_the_schemas_kind_enum_is_the_table() -> None:
    schema = json.loads((SCHEMA_DIR / "rlm.schema.json").read_text(encoding="utf-8"))
    assert schema["$defs"]["agent"]["properties"]["kind"]["enum"] == list(KINDS)
    assert defaults.AGENT_KIND in KINDS


def _kind_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Where a kind's name is compared with (==, in, match), used as a table key or to index one."""
    found = []

    def names(node: ast.AST | None) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in KINDS:
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [n for item in node.elts for n in names(item)]
        return []

    for node in ast.walk(tree):
        parts: list[ast.AST | None] = []
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            parts = list(node.keys)
        elif isinstance(node, ast.Subscript):
            parts = [node.slice]
        elif isinstance(node, ast.MatchValue):
            parts = [node.value]
        found += [(getattr(node, "lineno", 0), name) for part in parts for name in names(part)]
    return found


def test_no_kind_is_named_in_a_comparison_outside_the_package() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "agents" or not (path.parent / "__init__.py").exists():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{path.relative_to(PACKAGE)}:{line}: '{name}'" for line, name in _kind_literals(tree)]
    assert offenders == [], "look the kind up in rlm_tasks.agents.KINDS instead"


def test_the_literal_check_catches_each_form() -> None:
    source = ('a == "codex"\nb in ("x", "claude")\nc = {"command": 1}\nd["codex"]\n'
              'match e:\n    case "claude":\n        pass\nf == "other"\n')
    assert [line for line, _ in _kind_literals(ast.parse(source))] == [1, 2, 3, 4, 6]


def test_a_kind_missing_a_hook_fails_at_registration() -> None:
    broken = types.ModuleType("broken")
    for name in vars(agents.codex):
        if not name.startswith("_") and name != "usage":
            setattr(broken, name, getattr(agents.codex, name))
    broken.NAME = "broken"
    with pytest.raises(TypeError) as raised:
        agents._checked(broken)  # type: ignore[arg-type]
    assert str(raised.value) == "agent kind 'broken' lacks usage"
    with pytest.raises(TypeError, match="agent kind 'codex' is registered twice"):
        agents._checked(agents.codex, agents.codex)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_reads_back_the_usage_of_its_own_events(name: str) -> None:
    kind = KINDS[name]
    usage = Usage(input_tokens=1234, cached_input_tokens=200, output_tokens=56, reasoning_tokens=7, model="m")
    events = kind.sample_events(usage, "done")
    if kind.DEFAULT_BINARY is None:  # a command prints no events: its usage is a file it writes
        assert events == [] and kind.USAGE_MARKERS == ()
        return
    lines = [json.dumps(e).encode() for e in events]
    kept = [json.loads(line) for line in lines if any(m in line for m in kind.USAGE_MARKERS)]
    found = kind.usage(kept)
    assert found is not None
    assert (found.input_tokens, found.cached_input_tokens, found.output_tokens) == (1234, 200, 56)
    assert all(kind.log_line(e) is None or kind.log_line(e) for e in events)
    assert any("done" in (kind.log_line(e) or "") for e in events)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_has_what_the_rest_of_rlm_looks_up(name: str) -> None:
    kind = KINDS[name]
    assert name == kind.NAME
    assert f"kind: {name} " in kind.STARTER and kind.STARTER.endswith("\n")
    assert set(kind.TIERS) <= {"standard", "standard-plus", "heavy"}
    for model, price in kind.PRICES.items():
        assert len(price) == 3 and price[1] <= price[0], model
    for sandbox in ("read-only", "workspace-write", "danger-full-access", "bypass"):
        agent = AgentSpec(kind=name, sandbox=sandbox, command=("w",))
        argv = kind.argv(agent, "m", "high")
        assert argv and all(isinstance(item, str) for item in argv)
        if kind.DEFAULT_BINARY is not None:
            assert argv[0] == kind.DEFAULT_BINARY
            assert kind.argv(agent._replace(binary="/x/y"), "m", None)[0] == "/x/y"
    assert kind.VERSION_ARGV == () or kind.VERSION_ARGV[0].startswith("-")


def test_codex_argv_keeps_the_prompt_on_stdin_last() -> None:
    argv = KINDS["codex"].argv(AgentSpec(args=("--x",)), "m", None)
    assert argv == ["codex", "exec", "-m", "m", "-C", ROOT_PLACEHOLDER, "--sandbox", "workspace-write", "--x", "-"]
    assert KINDS["codex"].stream(("--x",), argv) and argv[-2:] == ["--json", "-"]


@pytest.mark.parametrize(("message", "cause", "fatal"), [
    ("unexpected status 401 Unauthorized: Incorrect API key provided", "auth", True),
    ("You exceeded your current quota, please check your plan and billing details", "quota", True),
    ("The model `gpt-9` does not exist or you do not have access to it", "model", True),
    ("exceeded retry limit, last status: 429 Too Many Requests", "rate_limit", False),
    ("stream disconnected before completion: error sending request (connection refused)", "network", False),
    ("503 Service Unavailable", "server", False),
    ("something else went wrong", None, None),
])
def test_failure_causes_from_error_messages(message: str, cause: str | None, fatal: bool | None) -> None:
    found = classify(message)
    assert (found and found.cause, found and found.fatal) == (cause, fatal)


def test_codex_and_claude_failures_from_their_events() -> None:
    codex = [{"type": "error", "message": "unexpected status 401 Unauthorized"},
             {"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized"}}]
    assert KINDS["codex"].failure(codex) == ("auth", "unexpected status 401 Unauthorized")
    claude = [{"type": "result", "subtype": "success", "is_error": True,
               "result": 'API Error: 429 {"type":"error","error":{"type":"rate_limit_error"}}'}]
    found = KINDS["claude"].failure(claude)
    assert found is not None and found.cause == "rate_limit"
    assert KINDS["claude"].failure([{"type": "result", "is_error": False, "result": "401"}]) is None
