"""An agent invocation: argv (from its kind in rlm_tasks/agents/), environment and stdin. Never a shell."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, NamedTuple

from rlm_tasks import secrets
from rlm_tasks.agents import kind_of
from rlm_tasks.agents.base import ROOT_PLACEHOLDER
from rlm_tasks.clock import iso
from rlm_tasks.config.records import AgentSpec, Plan, TaskSpec, Tier
from rlm_tasks.errors import UserError
from rlm_tasks.layout import RunLayout
from rlm_tasks.render.jinja import command_context, render_string


class AgentNotFound(UserError):
    """The agent executable is neither a path that exists nor a name on PATH."""


class Invocation(NamedTuple):
    argv: tuple[str, ...]
    env: dict[str, str]
    report_from_stdout: bool
    timeout: float | None
    events: str | None = None  # the kind whose JSONL event stream stdout is (run/usage.py reads it)
    secrets: tuple[str, ...] = ()  # values masked in the worker's log (rlm_tasks.secrets)


def _argv_template(agent: AgentSpec, tier: Tier) -> list[str]:
    """The argv with the repository root as a placeholder, so digests match across machines."""
    return kind_of(agent.kind).argv(agent, tier.model, tier.effort)


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
        "report": kind_of(agent.kind).report_mode(agent),
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
    kind = kind_of(agent.kind)
    template = _argv_template(agent, tier)
    events: str | None = None
    if kind.DEFAULT_BINARY is None:  # the argv is agent.command: Jinja templates over the task
        context = command_context(plan, task, layout) | {"model": tier.model, "effort": tier.effort, "attempt": attempt}
        argv = [render_string(item, context, f"agent.command[{i}]") for i, item in enumerate(template)]
        if argv and "/" in argv[0] and not os.path.isabs(argv[0]):
            argv[0] = str(plan.root / argv[0])
    else:
        argv = [str(plan.root) if item == ROOT_PLACEHOLDER else item for item in template]
        argv[0] = resolve_binary(argv[0], plan)
        events = agent.kind if kind.stream(agent.args, argv) else None
    env = secrets.inherited(os.environ, agent.env_inherit)
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
        report_from_stdout=kind.report_mode(agent) == "stdout",
        timeout=agent.timeout,
        events=events,
        secrets=secrets.values_to_mask(os.environ, dict(agent.env), agent.mask_env),
    )



def check_argv(plan: Plan, layout: RunLayout, task: TaskSpec) -> list[str]:
    """The argv that checks the task's agent exists and runs before a run's first attempt (run/failfast.py):
    the binary and its kind's VERSION_ARGV; a kind without one (a command) is looked up, not run.
    AgentNotFound when the binary cannot be found."""
    program = build(plan, layout, task, plan.tier(task.compute_tier), 0).argv[0]
    return [program, *kind_of(task.agent.kind).VERSION_ARGV]
