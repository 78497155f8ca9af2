"""The table of agent kinds (rlm_tasks/agents/): one protocol, one registration, nothing compares a kind outside."""

from __future__ import annotations

import ast
import json
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import LOCAL_RUN, Repo

import rlm_tasks
from rlm_tasks import agents
from rlm_tasks.agents import KINDS
from rlm_tasks.agents.base import ROOT_PLACEHOLDER, Usage, classify
from rlm_tasks.config import defaults
from rlm_tasks.config.records import AgentSpec
from rlm_tasks.resources import SCHEMA_DIR
from rlm_tasks.run.usage import from_events, human_line

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


# ---- gemini and opencode: argv and what their real event streams say ----------------------------------------
# Lines as the pinned CLIs printed them against the scripted servers (tests/e2e), long texts cut.
GEMINI_EVENTS = [
    '{"type":"init","timestamp":"2026-12-06T19:57:37.822Z","session_id":"61d3","model":"gemini-2.5-flash"}',
    '{"type":"message","role":"user","content":"Use the map-worker skill.\\n$map-worker\\n"}',
    '{"type":"tool_use","tool_name":"write_file","tool_id":"w_0","parameters":{"file_path":"r.md","content":"# b"}}',
    '{"type":"tool_result","tool_id":"w_0","status":"success"}',
    '{"type":"message","role":"assistant","content":"Report written.","delta":true}',
    '{"type":"result","status":"success","stats":{"total_tokens":2380,"input_tokens":2222,"output_tokens":142,'
    '"cached":266,"input":1956,"duration_ms":1510,"tool_calls":1,"models":{"gemini-2.5-flash":{"total_tokens":2380,'
    '"input_tokens":2222,"output_tokens":142,"cached":266,"input":1956}}}}',
]
OPENCODE_EVENTS = [
    '{"type":"step_start","part":{"type":"step-start"}}',
    '{"type":"tool_use","part":{"type":"tool","tool":"write","callID":"call_1","state":{"status":"completed",'
    '"input":{"filePath":"r.md","content":"# b"},"output":"Wrote file successfully."}}}',
    '{"type":"step_finish","part":{"reason":"tool-calls","type":"step-finish","tokens":{"total":1094,"input":926,'
    '"output":51,"reasoning":6,"cache":{"write":0,"read":111}},"cost":0}}',
    '{"type":"text","part":{"type":"text","text":"Report written."}}',
    '{"type":"step_finish","part":{"reason":"stop","type":"step-finish","tokens":{"total":1138,"input":952,'
    '"output":57,"reasoning":7,"cache":{"write":0,"read":122}},"cost":0.0125}}',
]


def _read(name: str, lines: list[str], tmp_path: Path) -> tuple[Usage | None, str]:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    shown = b"".join(human_line(name, line.encode()) or b"" for line in lines).decode()
    return from_events(name, path), shown


def test_gemini_usage_counts_thoughts_as_output_and_cached_tokens_as_input(tmp_path: Path) -> None:
    found, shown = _read("gemini", GEMINI_EVENTS, tmp_path)
    assert found == Usage(input_tokens=2222, cached_input_tokens=266, output_tokens=142 + 16, reasoning_tokens=16,
                          model="gemini-2.5-flash")
    assert shown.splitlines() == [
        "[session] model gemini-2.5-flash",
        '[tool] write_file {"file_path": "r.md", "content": "# b"}',
        "[agent] Report written.",
        "[result] success, 1 tool calls, input 2222 (cached 266), output 142",
    ]


def test_opencode_usage_adds_the_cache_back_into_input_and_reasoning_into_output(tmp_path: Path) -> None:
    found, shown = _read("opencode", OPENCODE_EVENTS, tmp_path)
    assert found == Usage(input_tokens=926 + 111 + 952 + 122, cached_input_tokens=233, output_tokens=51 + 6 + 57 + 7,
                          reasoning_tokens=13, cost_usd=0.0125)
    assert shown.splitlines() == [
        '[tool] write {"filePath": "r.md", "content": "# b"}',
        "[step] tool-calls: input 926 (cache read 111), output 51, cost 0",
        "[agent] Report written.",
        "[step] stop: input 952 (cache read 122), output 57, cost 0.0125",
    ]
    refused = {"type": "tool_use", "part": {"tool": "write", "state": {"status": "error", "input": {"filePath": "r"},
                                                                       "error": "The user has specified a rule"}}}
    assert KINDS["opencode"].log_line(refused) == \
        '[tool] write {"filePath": "r"}\n[tool error] The user has specified a rule'
    no_price = [line.replace('"cost":0.0125', '"cost":0') for line in OPENCODE_EVENTS]
    unpriced = _read("opencode", no_price, tmp_path)[0]
    assert unpriced is not None and unpriced.cost_usd is None  # 0: opencode had no price; rlm's applies


def test_gemini_and_opencode_failures_from_their_events() -> None:
    gemini = [{"type": "result", "status": "error", "error": {
        "type": "unknown", "message": '[API Error: {"error":{"code":401,"message":"API key not valid"}}]'}}]
    assert KINDS["gemini"].failure(gemini) == ("auth", gemini[0]["error"]["message"])
    assert KINDS["gemini"].failure([{"type": "error", "severity": "warning", "message": "Loop detected"}]) is None
    opencode = [{"type": "error", "error": {"name": "APIError", "data": {"message": "Rate limit reached",
                                                                         "statusCode": 429}}}]
    found = KINDS["opencode"].failure(opencode)
    assert found is not None and (found.cause, found.fatal) == ("rate_limit", False)


@pytest.mark.parametrize(("sandbox", "flags"), [
    ("read-only", ["--approval-mode", "plan"]), ("workspace-write", ["--approval-mode", "auto_edit"]),
    ("danger-full-access", ["--approval-mode", "yolo"]), ("bypass", ["--yolo"])])
def test_gemini_argv(sandbox: str, flags: list[str]) -> None:
    argv = KINDS["gemini"].argv(AgentSpec(kind="gemini", sandbox=sandbox, args=("--x",)), "gemini-2.5-pro", "high")
    assert argv == ["gemini", "-m", "gemini-2.5-pro", *flags, "--skip-trust", "--x"]  # no effort flag exists
    assert KINDS["gemini"].stream(("--x",), argv) and argv[-2:] == ["--output-format", "stream-json"]
    assert not KINDS["gemini"].stream(("-o", "text"), [])
    chosen: list[str] = []
    assert KINDS["gemini"].stream(("--output-format=stream-json",), chosen) and chosen == []


@pytest.mark.parametrize(("sandbox", "flags"), [
    ("read-only", ["--agent", "plan"]), ("workspace-write", []), ("danger-full-access", ["--auto"]),
    ("bypass", ["--auto"])])
def test_opencode_argv(sandbox: str, flags: list[str]) -> None:
    argv = KINDS["opencode"].argv(AgentSpec(kind="opencode", sandbox=sandbox), "anthropic/claude-opus-4-5", "high")
    assert argv == ["opencode", "run", "--dir", ROOT_PLACEHOLDER, "-m", "anthropic/claude-opus-4-5",
                    "--variant", "high", *flags, "--title", "rlm worker"]
    assert KINDS["opencode"].stream((), argv) and argv[-2:] == ["--format", "json"]
    assert not KINDS["opencode"].stream(("--format", "default"), [])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "tiers"), [
    ("gemini", {"standard": {"model": "gemini-2.5-flash"}}),
    ("opencode", {"standard": {"model": "anthropic/claude-haiku-4-5", "effort": "low"}}),
])
def test_a_run_of_each_new_kind_records_what_its_events_say(repo: Repo, name: str, tiers: dict[str, Any]) -> None:
    """The fake agent prints the kind's own events ($FAKE_AGENT_KIND): the runner asks for them and reads them."""
    repo.write_codex([{"id": "a", "goal": "A"}], tiers=tiers,
                     agent={"kind": name, "env": {"FAKE_AGENT_KIND": name}})
    result = repo.doit()
    assert result.code == 0, result.out
    model = tiers["standard"]["model"]
    expected = KINDS[name].argv(AgentSpec(kind=name), model, tiers["standard"].get("effort"))
    assert KINDS[name].stream((), expected)  # its own argv, with the event-stream flags
    root = str(repo.root.resolve())
    assert repo.calls()[0]["argv"][1:] == [root if item == ROOT_PLACEHOLDER else item for item in expected[1:]]
    usage = repo.provenance()["tasks"]["a"]["attempts"][0]["usage"]
    price = KINDS[name].PRICES[model]
    assert usage == {"input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 100, "reasoning_tokens": 10,
                     "total_tokens": 1100, "model": model, "cost_source": "prices",
                     "cost_usd": round((800 * price[0] + 200 * price[1] + 100 * price[2]) / 1_000_000, 6)}
    assert "[agent] a done" in repo.path(f"{LOCAL_RUN}/logs/a.attempt-1.log").read_text(encoding="utf-8")


def test_a_kind_given_another_kinds_builtin_model_is_warned(repo: Repo) -> None:
    repo.write({"version": 1, "run_id": "t", "goal": "g", "agent": {"kind": "gemini"},
                "tasks": [{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "compute_tier": "heavy",
                                                     "agent": {"kind": "codex"}}]})
    result = repo.rlm_cli("validate")
    assert result.code == 0
    assert [line for line in result.lines if "agent kind" in line] == [
        "rlm.yaml:5:9: agent.kind: warning: agent kind 'gemini' gets the built-in model 'gpt-5.1-codex-mini' for "
        "compute_tier 'standard'; declare tiers.standard.model (`rlm init --agent gemini` writes gemini's tiers)"]
    repo.write({"version": 1, "run_id": "t", "goal": "g", "agent": {"kind": "gemini"},
                "tiers": {"standard": {"model": "gemini-2.5-pro"}}, "tasks": [{"id": "a", "goal": "A"}]})
    assert not [line for line in repo.rlm_cli("validate").lines if "agent kind" in line]
