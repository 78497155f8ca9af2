"""plan.json and plan iterations.

Each time the plan changes (a task added, removed or edited, or the contract
edited) the iteration number goes up and the previous plan.json is kept as
artifacts/plan.iter-<n>.json. Re-running an unchanged plan is no iteration.
"""

from __future__ import annotations

from typing import Any

from rlm_tasks import jsonio
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import sha256_json, sha256_text

FORMAT_VERSION = 1


def _task_record(ctx: RunContext, task: Any) -> dict[str, Any]:
    tier = ctx.plan.tier(task.compute_tier)
    record = {
        "id": task.id,
        "doit_name": task.doit_name,
        "mode": task.mode,
        "goal": task.goal,
        "granularity": task.granularity,
        "compute_tier": task.compute_tier,
        "model": tier.model,
        "effort": tier.effort,
        "depends_on": list(task.depends_on),
        "inputs": list(task.inputs),
        "watch": list(task.watch),
        "owns": list(task.owns),
        "report_path": task.report_path,
        "prompt_path": ctx.layout.prompt_rel(task.worker_id),
        "agent_kind": task.agent.kind,
    }
    if task.fanout is not None:  # only generated tasks: a plan without foreach keeps its plan.json bytes
        record["foreach"] = {"name": task.fanout, "item": task.item}
    record["definition_sha256"] = sha256_json(record)
    return record


def plan_record(ctx: RunContext, iteration: int, changed: dict[str, list[str]]) -> dict[str, Any]:
    plan = ctx.plan
    return {
        "version": FORMAT_VERSION,
        "run_id": plan.run_id,
        "goal": plan.goal,
        "iteration": iteration,
        "changed_since_last_iteration": changed,
        "contract_path": ctx.layout.contract_rel,
        "contract_sha256": sha256_text(ctx.contract_text),
        "budget": {
            "max_iterations": plan.budget.max_iterations,
            "max_workers": plan.budget.max_workers,
            "max_inflight": plan.budget.max_inflight,
        },
        "verify_k": plan.verify_k,
        "tasks": [_task_record(ctx, task) for task in plan.tasks],
        **({"fanouts": {name: list(ids) for name, ids in plan.fanouts}} if plan.fanouts else {}),
    }


def _diff(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, list[str]]:
    before = {t["id"]: t.get("definition_sha256") for t in previous.get("tasks", [])}
    after = {t["id"]: t["definition_sha256"] for t in current["tasks"]}
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "edited": sorted(i for i in set(after) & set(before) if after[i] != before[i]),
    }


def next_record(ctx: RunContext) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the plan.json to write, the previous plan.json when this is a new iteration)."""
    previous = jsonio.read_json(ctx.layout.plan_json)
    draft = plan_record(ctx, 1, {"added": sorted(t.id for t in ctx.plan.tasks), "removed": [], "edited": []})
    if not isinstance(previous, dict) or "iteration" not in previous:
        return draft, None
    changed = _diff(previous, draft)
    contract_changed = previous.get("contract_sha256") != draft["contract_sha256"]
    if any(changed.values()) or contract_changed:
        record = plan_record(ctx, int(previous["iteration"]) + 1, changed)
        record["contract_changed"] = contract_changed
        return record, previous
    record = plan_record(ctx, int(previous["iteration"]), previous.get("changed_since_last_iteration", changed))
    if "contract_changed" in previous:
        record["contract_changed"] = previous["contract_changed"]
    return record, None


def current_iteration(ctx: RunContext) -> int:
    record, _ = next_record(ctx)
    return int(record["iteration"])


def is_current(ctx: RunContext) -> bool:
    """plan.json and the contract on disk already say what this plan would write."""
    record, previous = next_record(ctx)
    contract = ctx.layout.abs(ctx.layout.contract_rel)
    return (previous is None and jsonio.read_json(ctx.layout.plan_json) == record
            and contract.exists() and contract.read_text(encoding="utf-8") == ctx.contract_text)


def write_plan(ctx: RunContext) -> bool:
    """Write plan.json (keeping the previous iteration's) and the contract; True if anything changed."""
    record, previous = next_record(ctx)
    if previous is not None:
        kept = ctx.layout.abs(f"{ctx.layout.artifacts_rel}/plan.iter-{previous['iteration']}.json")
        jsonio.write_json(kept, previous)
    changed = jsonio.write_text_if_changed(ctx.layout.plan_json, jsonio.dumps(record))
    contract = jsonio.write_text_if_changed(ctx.layout.abs(ctx.layout.contract_rel), ctx.contract_text)
    return changed or contract
