"""Freshness of every task, computed from files alone (no doit database)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rlm_tasks.config.plan import TaskSpec
from rlm_tasks.state import inflight, progress, usage
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import Freshness, State

STATE_ORDER = [State.FRESH, State.STALE, State.MISSING, State.INVALID]
LISTED_PER_STATE = 10  # a 1,000-task run prints counts and a few paths, not a thousand lines
LIST_ALL_UP_TO = 20  # small runs list every task


def collect(ctx: RunContext) -> list[tuple[TaskSpec, Freshness]]:
    rows = [(task, ctx.freshness(task)) for task in ctx.plan.tasks]
    ctx.save_cache()
    return rows


def produced_by(ctx: RunContext, task: TaskSpec) -> tuple[int, str | None]:
    """(attempts recorded, tier that produced the report) from provenance; (0, None) without an entry."""
    entry = ctx.store.get(task.id) or {}
    attempts = entry.get("attempts")
    count = len(attempts) if isinstance(attempts, list) else (1 if entry else 0)
    return count, entry.get("compute_tier")


def as_json(ctx: RunContext, rows: list[tuple[TaskSpec, Freshness]]) -> dict[str, Any]:
    counts = Counter(f.state.value for _, f in rows)
    tasks = []
    for task, f in rows:
        attempts, tier = produced_by(ctx, task)
        tasks.append({
            "id": task.id,
            "doit_name": task.doit_name,
            "state": f.state.value,
            "reasons": list(f.reasons),
            "detail": f.detail,
            "report_path": task.report_path,
            "attempts": attempts,
            "compute_tier": tier,
            **({"foreach": {"name": task.fanout, "item": task.item}} if task.fanout else {}),
        })
    running, failed = activity(ctx, rows)
    return {
        "run_id": ctx.plan.run_id,
        "counts": {state.value: counts.get(state.value, 0) for state in STATE_ORDER},
        "total": len(rows),
        "running": running,
        "failed": failed,
        "tasks": tasks,
        "fanouts": {name: fanout_counts(rows, name) for name, _ in ctx.plan.fanouts},
        "usage": usage.summary(ctx),
    }


def fanout_counts(rows: list[tuple[TaskSpec, Freshness]], name: str) -> dict[str, int]:
    counts = Counter(f.state.value for task, f in rows if task.fanout == name)
    return {state.value: counts.get(state.value, 0) for state in STATE_ORDER}


def fanout_line(rows: list[tuple[TaskSpec, Freshness]], name: str) -> str:
    """A whole fan-out in one line: its size and how many tasks are in each state."""
    counts = fanout_counts(rows, name)
    total = sum(counts.values())
    parts = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    return f"{'foreach':<8} {name:<30} {total} tasks" + (f": {parts}" if parts else "")


def summary_line(ctx: RunContext, rows: list[tuple[TaskSpec, Freshness]]) -> str:
    counts = Counter(f.state for _, f in rows)
    parts = ", ".join(f"{counts.get(s, 0)} {s.value}" for s in STATE_ORDER)
    return f"run {ctx.plan.run_id}: {len(rows)} tasks: {parts}"


def usage_line(ctx: RunContext) -> str | None:
    """The run's tokens and cost so far; None before any attempt reported usage."""
    spent = usage.spent(ctx)
    return f"usage: {spent.line()}" if spent.attempts else None


def task_line(task: TaskSpec, f: Freshness, attempts: int = 0, tier: str | None = None) -> str:
    """One task; attempts and the producing tier are shown when a retry or an escalation made the report."""
    why = ",".join(f.reasons) if f.reasons else (f.detail or "")
    line = f"{f.state.value:<8} {task.doit_name:<30} {why + '  ' if why else ''}{task.report_path}"
    if attempts > 1 or (tier is not None and tier != task.compute_tier):
        line += f"  (attempt {attempts}, {tier})"
    return line


def task_lines(ctx: RunContext, rows: list[tuple[TaskSpec, Freshness]], show_all: bool = False) -> list[str]:
    """Every task of a small run; of a large one, up to LISTED_PER_STATE per state that is not fresh.

    A fan-out is one line of counts (unless `show_all`).
    """
    if show_all:
        return [task_line(task, f, *produced_by(ctx, task)) for task, f in rows]
    grouped = [fanout_line(rows, name) for name, _ in ctx.plan.fanouts]
    rows = [(task, f) for task, f in rows if task.fanout is None]
    return grouped + _listed(ctx, rows)


def _listed(ctx: RunContext, rows: list[tuple[TaskSpec, Freshness]]) -> list[str]:
    if len(rows) <= LIST_ALL_UP_TO:
        return [task_line(task, f, *produced_by(ctx, task)) for task, f in rows]
    lines: list[str] = []
    for state in STATE_ORDER[1:]:
        matching = [(task, f) for task, f in rows if f.state is state]
        lines += [task_line(task, f, *produced_by(ctx, task)) for task, f in matching[:LISTED_PER_STATE]]
        if len(matching) > LISTED_PER_STATE:
            lines.append(f"... and {len(matching) - LISTED_PER_STATE} more {state.value}")
    fresh = sum(1 for _, f in rows if f.fresh)
    if fresh:
        lines.append(f"({fresh} fresh tasks not listed; --all lists every task)")
    return lines


def activity(ctx: RunContext, rows: list[tuple[TaskSpec, Freshness]]) -> tuple[list[str], list[str]]:
    """(running, failed) worker ids: running from inflight.json, failed when the last attempt was rejected."""
    running = [str(e.get("worker_id")) for e in inflight.live_entries(inflight.read(ctx.layout))]
    not_fresh = {task.id for task, f in rows if not f.fresh}
    return running, progress.failed_ids(ctx, not_fresh, set(running))


def activity_line(ctx: RunContext, rows: list[tuple[TaskSpec, Freshness]]) -> str | None:
    running, failed = activity(ctx, rows)
    parts = []
    if running:
        parts.append(f"{len(running)} running")
    if failed:
        shown = ", ".join(failed[:LISTED_PER_STATE]) + (" ..." if len(failed) > LISTED_PER_STATE else "")
        parts.append(f"{len(failed)} failed ({shown}); logs: {ctx.layout.logs_rel}/")
    return "; ".join(parts) if parts else None
