"""Agent kinds → argv, environment and stdin. Never a shell: argv lists only."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, NamedTuple

from rlm_tasks.clock import iso
from rlm_tasks.config.records import AgentSpec, Plan, TaskSpec, Tier
from rlm_tasks.errors import UserError
from rlm_tasks.layout import RunLayout
from rlm_tasks.render.jinja import command_context, render_string

DEFAULT_BINARIES = {"codex": "codex", "claude": "claude"}
ROOT_PLACEHOLDER = "{root}"

# Claude Code's permission modes closest to each sandbox choice.
CLAUDE_PERMISSION_MODES = {
    "read-only": "plan",
    "workspace-write": "acceptEdits",
    "danger-full-access": "bypassPermissions",
}


class AgentNotFound(UserError):
    """The agent executable is neither a path that exists nor a name on PATH."""


class Invocation(NamedTuple):
    argv: tuple[str, ...]
    env: dict[str, str]
    report_from_stdout: bool
    timeout: float | None
    events: str | None = None  # "codex" / "claude": stdout is a JSONL event stream (run/usage.py reads it)


def _argv_template(agent: AgentSpec, tier: Tier) -> list[str]:
    """The argv with the repository root as a placeholder, so digests match across machines."""
    binary = agent.binary or DEFAULT_BINARIES.get(agent.kind, agent.kind)
    if agent.kind == "codex":
        argv = [binary, "exec", "-m", tier.model]
        if tier.effort:
            argv += ["-c", f'model_reasoning_effort="{tier.effort}"']
        argv += ["-C", ROOT_PLACEHOLDER]
        if agent.sandbox == "bypass":
            argv.append("--dangerously-bypass-approvals-and-sandbox")
        else:
            argv += ["--sandbox", agent.sandbox]
        return [*argv, *agent.args, "-"]
    if agent.kind == "claude":
        argv = [binary, "-p", "--model", tier.model]
        if tier.effort:
            argv += ["--effort", tier.effort]
        if agent.sandbox == "bypass":
            argv.append("--dangerously-skip-permissions")
        else:
            argv += ["--permission-mode", CLAUDE_PERMISSION_MODES[agent.sandbox]]
        return [*argv, *agent.args]
    return list(agent.command)


def describe(task: TaskSpec, tier: Tier) -> dict[str, Any]:
    """What identifies the invocation for provenance: no machine-specific paths or env values."""
    agent = task.agent
    return {
        "kind": agent.kind,
        "binary": agent.binary,
        "model": tier.model,
        "effort": tier.effort,
        "argv": _argv_template(agent, tier),
        "env_names": sorted(name for name, _ in agent.env),
        "report": agent.report if agent.kind == "command" else "file",
    }


def resolve_binary(name: str, plan: Plan) -> str:
    if "/" in name:
        candidate = plan.root / name if not os.path.isabs(name) else None
        path = str(candidate) if candidate is not None else name
        if os.path.exists(path):
            return path
        raise AgentNotFound(f"agent executable '{name}' does not exist")
    found = shutil.which(name)
    if found is None:
        raise AgentNotFound(f"agent executable '{name}' not found on PATH; set agent.binary in rlm.yaml")
    return found


def time_budget(timeout: float | None, now: float | None = None) -> dict[str, str]:
    """RLM_TIMEOUT_SECONDS and RLM_DEADLINE (UTC, ISO 8601) of an attempt starting now; empty without a timeout."""
    if timeout is None:
        return {"RLM_TIMEOUT_SECONDS": "", "RLM_DEADLINE": ""}
    start = time.time() if now is None else now
    try:
        deadline = iso(start + timeout)
    except (OverflowError, OSError, ValueError):  # `.inf` or a timeout past the year 9999: no deadline to state
        return {"RLM_TIMEOUT_SECONDS": "", "RLM_DEADLINE": ""}
    return {"RLM_TIMEOUT_SECONDS": f"{timeout:g}", "RLM_DEADLINE": deadline}


def build(plan: Plan, layout: RunLayout, task: TaskSpec, tier: Tier, attempt: int) -> Invocation:
    agent = task.agent
    template = _argv_template(agent, tier)
    events: str | None = None
    if agent.kind == "command":
        context = command_context(plan, task, layout) | {"model": tier.model, "effort": tier.effort, "attempt": attempt}
        argv = [render_string(item, context, f"agent.command[{i}]") for i, item in enumerate(template)]
        if argv and "/" in argv[0] and not os.path.isabs(argv[0]):
            argv[0] = str(plan.root / argv[0])
    else:
        argv = [str(plan.root) if item == ROOT_PLACEHOLDER else item for item in template]
        argv[0] = resolve_binary(argv[0], plan)
        events = _with_event_stream(agent, argv)
    env = dict(os.environ)
    env.update(dict(agent.env))
    env.update({
        "RLM_RUN_ID": plan.run_id,
        "RLM_WORKER_ID": task.worker_id,
        "RLM_MODE": task.mode,
        "RLM_REPORT_PATH": str(layout.abs(task.report_path)),
        "RLM_PROMPT_PATH": str(layout.abs(layout.prompt_rel(task.worker_id))),
        "RLM_CONTRACT_PATH": str(layout.abs(layout.contract_rel)),
        "RLM_COMPUTE_TIER": tier.name,
        "RLM_MODEL": tier.model,
        "RLM_EFFORT": tier.effort or "",
        "RLM_ATTEMPT": str(attempt),
        **time_budget(agent.timeout),
    })
    return Invocation(
        argv=tuple(argv),
        env=env,
        report_from_stdout=agent.kind == "command" and agent.report == "stdout",
        timeout=agent.timeout,
        events=events,
    )


def _with_event_stream(agent: AgentSpec, argv: list[str]) -> str | None:
    """Ask the agent for its JSONL event stream, where its usage is; None when `args` chose another output.

    Added here, not in the argv template: the output format does not change what the worker does, so
    provenance digests stay as they were.
    """
    args = list(agent.args)
    if agent.kind == "codex":
        if "--json" not in args:
            argv.insert(len(argv) - 1, "--json")  # before the final "-" (prompt on stdin)
        return "codex"
    if agent.kind != "claude":
        return None
    chosen = [i for i, arg in enumerate(args) if arg.startswith("--output-format")]
    if chosen:
        i = chosen[-1]
        value = args[i].partition("=")[2] or (args[i + 1] if i + 1 < len(args) else "")
        return "claude" if value in ("stream-json", "json") else None  # json: one `result` event at the end
    argv.extend(["--output-format", "stream-json", *([] if "--verbose" in args else ["--verbose"])])
    return "claude"
