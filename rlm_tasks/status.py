"""Freshness of every task, computed from files alone (no doit database)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .context import RunContext
from .provenance import Freshness, State

STATE_ORDER = [State.FRESH, State.STALE, State.MISSING, State.INVALID]


def collect(ctx: RunContext) -> list[tuple[Any, Freshness]]:
    return [(task, ctx.freshness(task)) for task in ctx.plan.tasks]


def as_json(ctx: RunContext, rows: list[tuple[Any, Freshness]]) -> dict[str, Any]:
    counts = Counter(f.state.value for _, f in rows)
    return {
        "run_id": ctx.plan.run_id,
        "counts": {state.value: counts.get(state.value, 0) for state in STATE_ORDER},
        "total": len(rows),
        "tasks": [
            {
                "id": task.id,
                "doit_name": task.doit_name,
                "state": f.state.value,
                "reasons": list(f.reasons),
                "detail": f.detail,
                "report_path": task.report_path,
            }
            for task, f in rows
        ],
    }


def summary_line(ctx: RunContext, rows: list[tuple[Any, Freshness]]) -> str:
    counts = Counter(f.state for _, f in rows)
    parts = ", ".join(f"{counts.get(s, 0)} {s.value}" for s in STATE_ORDER)
    return f"run {ctx.plan.run_id}: {len(rows)} tasks: {parts}"


def task_line(task: Any, f: Freshness) -> str:
    why = ",".join(f.reasons) if f.reasons else (f.detail or "")
    return f"{f.state.value:<8} {task.doit_name:<30} {why + '  ' if why else ''}{task.report_path}"
