"""plan.json: the validated plan as the tool will run it, for people, agents and CI to read."""

from __future__ import annotations

from typing import Any

from . import jsonio
from .context import RunContext
from .provenance import sha256_text

FORMAT_VERSION = 1


def plan_record(ctx: RunContext) -> dict[str, Any]:
    plan = ctx.plan
    tasks = []
    for task in plan.tasks:
        tier = plan.tier(task.compute_tier)
        tasks.append({
            "id": task.id,
            "doit_name": task.doit_name,
            "mode": task.mode,
            "goal": task.goal,
            "granularity": task.granularity,
            "compute_tier": task.compute_tier,
            "model": tier.model,
            "effort": tier.effort,
            "depends_on": list(task.depends_on),
            "report_path": task.report_path,
            "prompt_path": ctx.layout.prompt_rel(task.worker_id),
            "agent_kind": task.agent.kind,
        })
    return {
        "version": FORMAT_VERSION,
        "run_id": plan.run_id,
        "goal": plan.goal,
        "config_sha256": sha256_text(plan.config_path.read_text(encoding="utf-8")) if plan.config_path.exists() else None,
        "contract_path": ctx.layout.contract_rel,
        "budget": {
            "max_iterations": plan.budget.max_iterations,
            "max_workers": plan.budget.max_workers,
            "max_inflight": plan.budget.max_inflight,
        },
        "tasks": tasks,
    }


def write_plan(ctx: RunContext) -> bool:
    """Write plan.json and the contract when their content changed; True if anything was written."""
    changed = jsonio.write_text_if_changed(ctx.layout.plan_json, jsonio.dumps(plan_record(ctx)))
    contract = jsonio.write_text_if_changed(ctx.layout.abs(ctx.layout.contract_rel), ctx.contract_text)
    return changed or contract
