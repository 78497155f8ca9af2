"""The progress view: done/running/failed/total, elapsed, the longest-running worker.

`doit` draws it live from its own events (run/reporter.py); `rlm status --watch`
draws the same line from the files alone (inflight.json, provenance, attempt records).
Both count the failures of this invocation only (a failure from an earlier run is in `rlm status`),
and an interrupted attempt is never a failure.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from rlm_tasks.state import history, inflight
from rlm_tasks.state.context import RunContext
from rlm_tasks.vocabulary import is_failure


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


def failed_since(ctx: RunContext, candidates: set[str], session: float | None) -> list[str]:
    """Of `candidates`, the tasks whose last attempt failed (never an interrupted one) in the run session that
    started at `session` (inflight.json's orchestrator: this invocation; None: any), in plan order."""
    out = []
    for task in ctx.plan.tasks:
        if task.id not in candidates:
            continue
        last = history.last(ctx.layout, task.worker_id)
        if last is not None and is_failure(last.get("outcome")) and session in (None, last.get("session")):
            out.append(task.id)
    return out


def orchestrator_started(data: dict[str, Any]) -> float | None:
    """When the orchestrator inflight.json names (the last `doit` on the run) started; None without one."""
    started = (data.get("orchestrator") or {}).get("started")
    return float(started) if isinstance(started, (int, float)) else None


def from_files(ctx: RunContext) -> Snapshot:
    data = inflight.read(ctx.layout)
    active = inflight.orchestrator_alive(data)
    live = inflight.live_entries(data)
    running = {str(e.get("worker_id")) for e in live}
    not_fresh = {t.id for t in ctx.plan.tasks if not ctx.freshness(t).fresh}
    partial = sum(1 for t in ctx.plan.tasks if t.id not in not_fresh and ctx.is_partial(t))
    now = time.time()
    started = orchestrator_started(data)
    elapsed = now - started if active and started is not None else None
    longest = None
    if live:
        oldest = min(live, key=lambda e: float(e.get("started") or now))
        longest = (str(oldest.get("doit_name") or oldest.get("worker_id")), now - float(oldest.get("started") or now))
    return Snapshot(
        total=len(ctx.plan.tasks),
        done=len(ctx.plan.tasks) - len(not_fresh),
        running=len(running),
        failed=len(failed_since(ctx, not_fresh - running, started)),
        elapsed=elapsed,
        longest=longest,
        active=active,
        partial=partial,
    )
