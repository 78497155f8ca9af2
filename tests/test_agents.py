"""Agent kinds → argv (never a shell), environment, and the prompt on stdin byte for byte."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_AGENT, FAKE_CODEX, RUN_DIR, Repo

from rlm_tasks.config.plan import load_plan
from rlm_tasks.layout import RunLayout
from rlm_tasks.render import agents
from rlm_tasks.render.agents import AgentNotFound, Invocation

REPORTS = f"{RUN_DIR}/artifacts/reports"


def build(repo: Repo, agent: dict[str, Any], *, tier: str = "standard", attempt: int = 1,
          **top: Any) -> Invocation:
    repo.write({"version": 1, "run_id": "t", "goal": "g", "agent": agent,
                "tasks": [{"id": "a", "goal": "A", "compute_tier": tier}], **top})
    plan = load_plan("rlm.yaml")
    task = plan.tasks[0]
    return agents.build(plan, RunLayout(plan.root, plan.run_id), task, plan.tier(task.compute_tier), attempt)


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ---- codex ------------------------------------------------------------------------------------------------

def test_codex_argv(repo: Repo) -> None:
    inv = build(repo, {"kind": "codex", "binary": str(FAKE_CODEX)})
    assert inv.argv == (str(FAKE_CODEX), "exec", "-m", "gpt-5.1-codex-mini", "-c", 'model_reasoning_effort="medium"',
                        "-C", str(repo.root.resolve()), "--sandbox", "workspace-write", "--json", "-")
    assert (inv.report_from_stdout, inv.timeout, inv.events) == (False, None, "codex")


def test_codex_heavy_tier_asks_for_xhigh_effort(repo: Repo) -> None:
    inv = build(repo, {"kind": "codex", "binary": str(FAKE_CODEX)}, tier="heavy")
    assert inv.argv[1:6] == ("exec", "-m", "gpt-5.2-codex", "-c", 'model_reasoning_effort="xhigh"')


def test_codex_tier_from_rlm_yaml(repo: Repo) -> None:
    inv = build(repo, {"kind": "codex", "binary": str(FAKE_CODEX)}, tier="standard-plus",
                tiers={"standard-plus": {"model": "my-model", "effort": "low"}})
    assert inv.argv[1:6] == ("exec", "-m", "my-model", "-c", 'model_reasoning_effort="low"')


@pytest.mark.parametrize("sandbox", ["read-only", "workspace-write", "danger-full-access"])
def test_codex_sandbox_modes(repo: Repo, sandbox: str) -> None:
    inv = build(repo, {"kind": "codex", "binary": str(FAKE_CODEX), "sandbox": sandbox})
    assert inv.argv[-4:] == ("--sandbox", sandbox, "--json", "-")


def test_codex_bypass_replaces_the_sandbox_flag(repo: Repo) -> None:
    inv = build(repo, {"kind": "codex", "binary": str(FAKE_CODEX), "sandbox": "bypass"})
    assert inv.argv == (str(FAKE_CODEX), "exec", "-m", "gpt-5.1-codex-mini", "-c", 'model_reasoning_effort="medium"',
                        "-C", str(repo.root.resolve()), "--dangerously-bypass-approvals-and-sandbox", "--json",
                        "-")
    assert "--sandbox" not in inv.argv


def test_codex_extra_args_go_before_the_trailing_dash(repo: Repo) -> None:
    inv = build(repo, {"kind": "codex", "binary": str(FAKE_CODEX), "args": ["--json", "--skip-git-repo-check"]})
    assert inv.argv[-5:] == ("--sandbox", "workspace-write", "--json", "--skip-git-repo-check", "-")  # once


def test_codex_binary_defaults_to_codex_on_path(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    codex = executable(repo.root / "bin" / "codex")
    monkeypatch.setenv("PATH", f"{codex.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    inv = build(repo, {"kind": "codex"})
    assert inv.argv[:2] == (str(codex), "exec")


def test_binary_relative_to_the_repository_root(repo: Repo) -> None:
    codex = executable(repo.root / "tools" / "codex")
    inv = build(repo, {"kind": "codex", "binary": "tools/codex"})
    assert inv.argv[0] == str(codex)


def test_missing_binary_is_a_clear_error(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(repo.root / "empty-bin"))
    with pytest.raises(AgentNotFound) as caught:
        build(repo, {"kind": "codex"})
    assert str(caught.value) == "agent executable 'codex' not found on PATH; set agent.binary in rlm.yaml"
    with pytest.raises(AgentNotFound) as caught:
        build(repo, {"kind": "codex", "binary": "tools/nope"})
    assert str(caught.value) == "agent executable 'tools/nope' does not exist"


# ---- claude -----------------------------------------------------------------------------------------------

def test_claude_argv(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    claude = executable(repo.root / "bin" / "claude")
    monkeypatch.setenv("PATH", f"{claude.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    inv = build(repo, {"kind": "claude", "args": ["--verbose"]}, tier="heavy")
    assert inv.argv == (str(claude), "-p", "--model", "gpt-5.2-codex", "--effort", "xhigh",
                        "--permission-mode", "acceptEdits", "--verbose", "--output-format", "stream-json")
    assert inv.events == "claude"


@pytest.mark.parametrize(("args", "events"), [(["--output-format", "text"], None),
                                              (["--output-format", "json"], "claude"),
                                              (["--output-format=stream-json", "--verbose"], "claude")])
def test_claude_output_chosen_in_args_is_kept(repo: Repo, args: list[str], events: str | None) -> None:
    claude = executable(repo.root / "claude-bin")
    inv = build(repo, {"kind": "claude", "binary": str(claude), "args": args})
    assert inv.argv[-len(args):] == tuple(args)
    assert "stream-json" not in inv.argv[:-len(args)]
    assert inv.events == events


@pytest.mark.parametrize(("sandbox", "flags"), [
    ("read-only", ("--permission-mode", "plan")),
    ("workspace-write", ("--permission-mode", "acceptEdits")),
    ("danger-full-access", ("--permission-mode", "bypassPermissions")),
    ("bypass", ("--dangerously-skip-permissions",)),
])
def test_claude_sandbox_modes(repo: Repo, sandbox: str, flags: tuple[str, ...]) -> None:
    claude = executable(repo.root / "claude-bin")
    inv = build(repo, {"kind": "claude", "binary": str(claude), "sandbox": sandbox})
    assert inv.argv == (str(claude), "-p", "--model", "gpt-5.1-codex-mini", "--effort", "medium", *flags,
                        "--output-format", "stream-json", "--verbose")


# ---- command ----------------------------------------------------------------------------------------------

def test_command_items_are_jinja_templates_over_the_task(repo: Repo) -> None:
    inv = build(repo, {"kind": "command", "command": [
        "{{ python }}", "tools/w.py", "--id", "{{ worker_id }}", "--tier", "{{ compute_tier }}",
        "--model", "{{ model }}", "--effort", "{{ effort }}", "--report", "{{ report_path }}",
        "--attempt", "{{ attempt }}", "--goal", "{{ task.goal }}", "--root={{ root }}", "{{ mode }}:{{ run_id }}"]},
        tier="heavy", attempt=2)
    assert inv.argv == (sys.executable, "tools/w.py", "--id", "a", "--tier", "heavy", "--model", "gpt-5.2-codex",
                        "--effort", "xhigh", "--report", f"{REPORTS}/a.md", "--attempt", "2", "--goal", "A",
                        f"--root={repo.root.resolve()}", "map:t")
    assert inv.report_from_stdout is False


def test_command_relative_program_is_resolved_against_the_root(repo: Repo) -> None:
    inv = build(repo, {"kind": "command", "command": ["bin/worker", "x y", "$(echo no)"], "report": "stdout"})
    assert inv.argv == (str(repo.root.resolve() / "bin" / "worker"), "x y", "$(echo no)")
    assert inv.report_from_stdout is True


def test_command_fields_are_ignored_by_other_kinds(repo: Repo) -> None:
    """Switching kind is a one-line edit: a leftover command/report does not change codex's argv."""
    inv = build(repo, {"kind": "codex", "binary": str(FAKE_CODEX), "command": ["x"], "report": "stdout"})
    assert inv.argv[1] == "exec"
    assert inv.report_from_stdout is False


# ---- environment ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["codex", "claude", "command"])
def test_every_kind_gets_the_rlm_environment(repo: Repo, kind: str) -> None:
    before = time.time()
    inv = build(repo, {"kind": kind, "binary": str(FAKE_CODEX), "command": ["{{ python }}"], "timeout": 5,
                       "env": {"MY_SETTING": "on"}}, tier="standard-plus", attempt=3)
    after = time.time()
    root = repo.root.resolve()
    # the time budget: seconds, and the deadline in UTC, ISO 8601, to the second
    deadline = dt.datetime.fromisoformat(inv.env.pop("RLM_DEADLINE").replace("Z", "+00:00")).timestamp()
    assert int(before + 5) <= deadline <= after + 5 and inv.env.pop("RLM_TIMEOUT_SECONDS") == "5"
    # RLM_KILL_GRACE_SECONDS is the harness's own setting, inherited like any other variable
    assert {k: v for k, v in inv.env.items() if k.startswith("RLM_") and k != "RLM_KILL_GRACE_SECONDS"} == {
        "RLM_RUN_ID": "t",
        "RLM_WORKER_ID": "a",
        "RLM_MODE": "map",
        "RLM_REPORT_PATH": str(root / REPORTS / "a.md"),
        "RLM_PROMPT_PATH": str(root / RUN_DIR / "artifacts" / "prompts" / "a.md"),
        "RLM_CONTRACT_PATH": str(root / RUN_DIR / "artifacts" / "context" / "run_contract.md"),
        "RLM_COMPUTE_TIER": "standard-plus",
        "RLM_MODEL": "gpt-5.2-codex",
        "RLM_EFFORT": "medium",
        "RLM_ATTEMPT": "3",
    }
    assert inv.env["MY_SETTING"] == "on"
    assert inv.env["PATH"] == os.environ["PATH"]
    assert inv.timeout == 5


def test_without_a_timeout_the_time_budget_variables_are_empty(repo: Repo) -> None:
    inv = build(repo, {"kind": "command", "command": ["{{ python }}"]})
    assert (inv.env["RLM_TIMEOUT_SECONDS"], inv.env["RLM_DEADLINE"]) == ("", "")
    # a timeout past what a date can say (`.inf`, 1e300 s) states no deadline rather than failing the run
    from rlm_tasks.render.agents import time_budget

    assert time_budget(float("inf")) == time_budget(1e300) == {"RLM_TIMEOUT_SECONDS": "", "RLM_DEADLINE": ""}


# ---- end to end through the fake codex -------------------------------------------------------------------

NASTY_GOAL = "Use `$map-worker` literally, keep `backticks`, never run $(rm -rf /) or ${HOME}; 'q' \"qq\" \\ é ✓ 漢字"


def test_prompt_arrives_on_stdin_byte_for_byte(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": NASTY_GOAL}])
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    [call] = repo.calls()
    prompt_file = repo.path(f"{RUN_DIR}/artifacts/prompts/a.md").read_bytes()
    assert repo.stdin_of(call) == prompt_file
    assert NASTY_GOAL.encode("utf-8") in prompt_file
    assert b"$map-worker\n" in prompt_file
    match = re.search(r"```json\n(.*?)\n```", repo.stdin_of(call).decode("utf-8"), re.S)
    assert match is not None and json.loads(match.group(1))["goal"] == NASTY_GOAL


def test_fake_codex_sees_the_argv_env_and_root(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A", "compute_tier": "heavy"}],
                     agent={"sandbox": "read-only", "args": ["--note", "$(touch pwned)", "`touch pwned2`"]})
    assert repo.doit().code == 0
    [call] = repo.calls()
    root = str(repo.root.resolve())
    assert call["argv"][1:] == ["exec", "-m", "gpt-5.2-codex", "-c", 'model_reasoning_effort="xhigh"', "-C", root,
                                "--sandbox", "read-only", "--note", "$(touch pwned)", "`touch pwned2`", "--json", "-"]
    assert call["cwd"] == root
    assert call["env"]["RLM_WORKER_ID"] == "a"
    assert call["env"]["RLM_ATTEMPT"] == "1"
    assert call["env"]["RLM_REPORT_PATH"] == str(repo.root.resolve() / REPORTS / "a.md")
    assert call["mode"] == "ok"  # FAKE_AGENT_MODE from agent.env reached the agent
    assert not (repo.root / "pwned").exists() and not (repo.root / "pwned2").exists()


def test_command_kind_gets_the_prompt_on_stdin_and_may_report_on_stdout(repo: Repo) -> None:
    text = "# From stdout\n\n## Contract Compliance\n- kept\n"
    repo.write_command([{"id": "a", "goal": NASTY_GOAL}], {"a": {"report": "stdout", "text": text}},
                       agent={"command": ["{{ python }}", str(FAKE_AGENT), "{{ task.goal }}"], "report": "stdout"})
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    [call] = repo.calls()
    assert call["argv"][1:] == [NASTY_GOAL]  # one argument, untouched by any shell
    assert repo.stdin_of(call) == repo.path(f"{RUN_DIR}/artifacts/prompts/a.md").read_bytes()
    assert repo.report("a").read_text(encoding="utf-8") == text


def test_command_with_an_undefined_variable_is_a_config_error(repo: Repo) -> None:
    repo.write({"version": 1, "run_id": "t", "goal": "g",
                "agent": {"kind": "command", "command": ["{{ python }}", "{{ nope }}"]},
                "tasks": [{"id": "a", "goal": "A"}]})
    result = repo.doit()
    assert result.code == 2
    from rlm_tasks.config.values import COMMAND_VARIABLES

    assert result.err == ("rlm.yaml:8:5: agent.command[1]: undefined variable 'nope' in '{{ nope }}' "
                          f"(did you mean 'scope'?); known: {', '.join(sorted(COMMAND_VARIABLES))}\n")
    assert repo.calls() == []
