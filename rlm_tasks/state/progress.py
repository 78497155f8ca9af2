"""The progress view: done/running/failed/total, elapsed, the longest-running worker.

`doit` draws it live from its own events (run/reporter.py); `rlm status --watch`
draws the same line from the files alone (inflight.json, provenance, logs).
"""

from __future__ import annotations

import time
from typing import NamedTuple

from rlm_tasks.state import inflight
from rlm_tasks.state.budget import attempts_by_task
from rlm_tasks.state.context import RunContext


class Snapshot(NamedTuple):
    total: int
    done: int
    running: int
    failed: int
    elapsed: float | None = None
    longest: tuple[str, float] | None = None  # doit name, age in seconds
    active: bool = True  # an orchestrator is running the run
    partial: int = 0  # of `done`: reports whose worker stopped early (a Self-termination section)


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def line(s: Snapshot) -> str:
    parts = [f"{s.done}/{s.total} done" + (f" ({s.partial} partial)" if s.partial else ""),
             f"{s.running} running", f"{s.failed} failed"]
    if s.elapsed is not None:
        parts.append(f"{clock(s.elapsed)} elapsed")
    if s.longest is not None:
        parts.append(f"longest {s.longest[0]} {clock(s.longest[1])}")
    return ", ".join(parts)


def failed_ids(ctx: RunContext, not_fresh: set[str], running: set[str]) -> list[str]:
    """Tasks whose last attempt left no accepted report (more attempts logged than provenance records)."""
    attempts = attempts_by_task(ctx)
    out = []
    for task in ctx.plan.tasks:
        if task.id in not_fresh and task.id not in running:
            entry = ctx.store.get(task.id)
            last = attempts.get(task.id, 0)
            retired = ctx.layout.abs(ctx.layout.history_rel(task.worker_id, last)).exists()  # `doit clean`
            if last > int((entry or {}).get("attempt") or 0) and not retired:
                out.append(task.id)
    return out


def from_files(ctx: RunContext) -> Snapshot:
    data = inflight.read(ctx.layout)
    active = inflight.orchestrator_alive(data)
    live = inflight.live_entries(data)
    running = {str(e.get("worker_id")) for e in live}
    not_fresh = {t.id for t in ctx.plan.tasks if not ctx.freshness(t).fresh}
    partial = sum(1 for t in ctx.plan.tasks if t.id not in not_fresh and ctx.is_partial(t))
    now = time.time()
    elapsed = None
    if active:
        started = (data.get("orchestrator") or {}).get("started")
        elapsed = now - float(started) if isinstance(started, (int, float)) else None
    longest = None
    if live:
        oldest = min(live, key=lambda e: float(e.get("started") or now))
        longest = (str(oldest.get("doit_name") or oldest.get("worker_id")), now - float(oldest.get("started") or now))
    return Snapshot(
        total=len(ctx.plan.tasks),
        done=len(ctx.plan.tasks) - len(not_fresh),
        running=len(running),
        failed=len(failed_ids(ctx, not_fresh, running)),
        elapsed=elapsed,
        longest=longest,
        active=active,
        partial=partial,
    )
