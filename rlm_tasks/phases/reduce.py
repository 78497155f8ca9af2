"""REDUCE: reduce_state.json (an inventory, never report text) and deferred.json."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from rlm_tasks import jsonio
from rlm_tasks.clock import iso
from rlm_tasks.phases import deferred
from rlm_tasks.state import drift, inflight, reports, status, usage
from rlm_tasks.state.budget import attempts_by_task, budget_use
from rlm_tasks.state.cache import stat_signature
from rlm_tasks.state.context import RunContext
from rlm_tasks.vocabulary import State

FORMAT_VERSION = 1
STATES = tuple(state.value for state in State)


def running_workers(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """Entries of inflight.json whose worker process group is still alive."""
    return {str(e.get("worker_id")): e for e in inflight.live_entries(inflight.read(ctx.layout))}


def quiet_seconds(ctx: RunContext, task: Any, entry: dict[str, Any], now: float) -> float:
    """How long none of the running attempt's report, progress file and log has changed (since its start at most)."""
    started = entry.get("started")
    latest = float(started) if isinstance(started, (int, float)) else now
    log = entry.get("log_path")
    paths = [ctx.report_file(task), ctx.layout.abs(ctx.layout.progress_rel(task.worker_id)),
             *([ctx.layout.abs(str(log))] if log else [])]
    for path in paths:
        try:
            latest = max(latest, path.stat().st_mtime)
        except OSError:
            continue
    return max(0.0, now - latest)


class _Rows(list[dict[str, Any]]):
    """reduce_state.json's rows, each kept as a tuple of its values (a dict per task was 8 MB at 10,000 tasks,
    built at the end of a run, where its memory peaks) and made a dict again as json's encoder iterates it.
    Only written through (write_inventory); callers of reduce_state get a plain list."""

    def __init__(self) -> None:
        super().__init__()
        self._packed: list[tuple[tuple[str, ...], tuple[Any, ...]]] = []
        self._shapes: dict[tuple[str, ...], tuple[str, ...]] = {}  # one keys tuple per shape of row

    def add(self, row: dict[str, Any]) -> None:
        keys = tuple(row)
        self._packed.append((self._shapes.setdefault(keys, keys), tuple(row.values())))

    def __len__(self) -> int:
        return len(self._packed)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for keys, values in self._packed:
            yield dict(zip(keys, values, strict=True))


def reduce_state(ctx: RunContext) -> dict[str, Any]:
    """reduce_state.json's content (its committed half)."""
    state, _ = _state(ctx)
    state["tasks"] = list(state["tasks"])
    return state


def _state(ctx: RunContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """(reduce_state.json: the same on every machine; reduce_state.local.json: ages, running workers, drift)."""
    attempts = attempts_by_task(ctx)
    spent = usage.summary(ctx)
    running = running_workers(ctx)
    states = status.resolve(ctx)
    now = time.time()
    rows = _Rows()
    counts: Counter[str] = Counter()
    missing: list[str] = []
    partial: list[str] = []
    stalled: list[str] = []
    ages: dict[str, float] = {}
    quiet: dict[str, float] = {}
    for task in ctx.plan.tasks:
        fresh = states[task.id]
        report = ctx.report_file(task)
        tried = attempts.get(task.id, 0)
        size: int | None
        try:
            stat = report.stat()
            size = stat.st_size
            ages[task.id] = round(now - stat.st_mtime, 1)
            text = report.read_text(encoding="utf-8", errors="replace")
            compliance = any(reports.normalise_heading(h) == "contract compliance" for _, h in reports.headings(text))
        except (FileNotFoundError, IsADirectoryError):
            size = None
            compliance = False
        row: dict[str, Any] = {
            "id": task.id,
            "doit_name": task.doit_name,
            "mode": task.mode,
            "state": fresh.state.value,
            "reasons": list(fresh.reasons) or ([fresh.detail] if fresh.detail else []),
            "upstream": list(fresh.upstream),
            "report_path": task.report_path,
            "report_bytes": size,
            "attempts": tried,
            "contract_compliance": compliance,
            "log_path": ctx.layout.log_rel(task.worker_id, tried) if tried else None,
            "usage": spent["tasks"].get(task.id),
        }
        if fresh.state is State.FAILED:
            row["failure"] = status.last_failure(ctx, task)
        if fresh.state is State.PARTIAL:
            row["next_plan_path"] = reports.next_plan_path(task.report_path)
            row["accept_partial"] = task.accept_partial
        if task.id in running:
            quiet[task.id] = round(quiet_seconds(ctx, task, running[task.id], now), 1)
            if quiet[task.id] > min(ctx.plan.stale_seconds, task.stall_after or ctx.plan.stale_seconds):
                stalled.append(task.id)
        rows.add(row)
        counts[row["state"]] += 1
        if row["report_bytes"] is None:
            missing.append(task.id)
        if row["state"] == "partial":
            partial.append(task.id)
    use = budget_use(ctx)
    state: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "run_id": ctx.plan.run_id,
        "iteration": max(use.iterations, 1),  # iteration 1 is under way before plan.json is first written
        "total": len(rows),
        "counts": {s: counts.get(s, 0) for s in STATES},
        "missing": missing,
        "partial": partial,
        "tasks": rows,
        "budget": {
            "iterations_used": use.iterations,
            "max_iterations": ctx.plan.budget.max_iterations,
            "workers_used": use.workers,
            "attempts_used": use.attempts,
            "max_workers": ctx.plan.budget.max_workers,
            "tokens_used": use.tokens,
            "max_tokens": ctx.plan.budget.max_tokens,
            "cost_usd_used": round(use.cost_usd, 6),
            "max_cost_usd": ctx.plan.budget.max_cost_usd,
            "exhausted": use.exhausted(ctx),
        },
        "usage": {"total": spent["total"], "by_tier": spent["by_tier"]},
        "local_path": ctx.layout.reduce_state_local_rel,
    }
    local: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "run_id": ctx.plan.run_id,
        "generated_at": iso(now),
        "stale_seconds": ctx.plan.stale_seconds,
        "running": sorted(running),
        "quiet_seconds": quiet,
        "stalled": stalled,
        "age_seconds": ages,
        "drift": drift.report(ctx),
    }
    return state, local


def summary_inputs(ctx: RunContext) -> list[str]:
    """What reduce_state.json and deferred.json summarise: plan, provenance, attempt records, every report."""
    layout = ctx.layout
    return [str(layout.plan_json), str(layout.provenance_json), str(ctx.store.journal_path),
            ctx.abs_str(f"{layout.artifacts_rel}/attempts"), *ctx.report_files_abs]


def refresh(ctx: RunContext) -> bool:
    """Rewrite the inventory unless nothing it summarises changed since it was last written (one stat per
    file): a command that shows states never leaves an older reduce_state.json behind. True when written."""
    output = ctx.layout.abs(reduce_state_path(ctx))
    inputs = summary_inputs(ctx)
    if ctx.cache is not None and ctx.cache.mark_is(
            "reduce", [*(stat_signature(path)[0] for path in inputs), stat_signature(output)[0]]):
        return False
    write_inventory(ctx)
    if ctx.cache is not None:
        ctx.cache.set_mark("reduce", inputs, outputs=[output])
    return True


def reduce_state_path(ctx: RunContext) -> str:
    return ctx.layout.reduce_state_rel


def deferred_path(ctx: RunContext) -> str:
    return ctx.layout.deferred_rel


def _write(ctx: RunContext, state: dict[str, Any], local: dict[str, Any]) -> None:
    # byte for byte as it was when nothing changed: a no-op in a fresh clone leaves the committed file alone
    jsonio.write_json(ctx.layout.abs(reduce_state_path(ctx)), state, if_changed=True)
    jsonio.write_json(ctx.layout.abs(ctx.layout.reduce_state_local_rel), local, durable=False)


def write_reduce_state(ctx: RunContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write both halves; (reduce_state.json, reduce_state.local.json) as written, the rows a plain list."""
    state, local = _state(ctx)
    _write(ctx, state, local)
    state["tasks"] = list(state["tasks"])
    return state, local


def write_inventory(ctx: RunContext) -> None:
    """write_reduce_state for a run, which keeps nothing of it: the rows are never all dicts at once."""
    _write(ctx, *_state(ctx))


def write_deferred(ctx: RunContext) -> dict[str, Any]:
    data = deferred.collect([(t.report_path, ctx.report_file(t)) for t in ctx.plan.tasks])
    data = {"version": FORMAT_VERSION, "run_id": ctx.plan.run_id, **data}
    jsonio.write_json(ctx.layout.abs(deferred_path(ctx)), data)
    return data


def reduce_summary(state: dict[str, Any], local: dict[str, Any] | None = None) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in state["counts"].items() if n)
    text = f"reduce: {state['total']} tasks ({counts or 'none'}), iteration {state['iteration']}"
    if local is not None and local["stalled"]:
        text += f", {len(local['stalled'])} stalled ({', '.join(local['stalled'][:5])})"
    if local is not None and local["drift"].get("unowned"):
        text += f", {len(local['drift']['unowned'])} unowned changed file(s) (drift)"
    return text


def deferred_summary(data: dict[str, Any]) -> str:
    return (f"deferred: {data['count']} opportunities from {data['reports_read']} reports, "
            f"{len(data['reports_without_section'])} without the section")
