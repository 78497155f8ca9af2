"""Every task's state, computed from files alone (no doit database), as `make -q` would see it.

A task's own files say fresh, stale, missing or invalid (state.provenance);
around them: a live worker makes it `running`, a last attempt cut short by a
signal `interrupted`, a report with a `Self-termination` section `partial`,
and a dependency that is not done makes it `stale` with `upstream_stale`.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, NamedTuple

from rlm_tasks.config.records import TaskSpec
from rlm_tasks.state import history, inflight, reports, schedule, settled, usage
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import Freshness
from rlm_tasks.vocabulary import State, is_failure

STATE_ORDER = list(State)
DONE = (State.FRESH, State.PARTIAL)  # a partial report does not rerun by itself, so its dependents may read it
LISTED_PER_STATE = 10  # a 1,000-task run prints counts and a few paths, not a thousand lines
LIST_ALL_UP_TO = 20  # small runs list every task
FRESH = Freshness(State.FRESH)


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _own(ctx: RunContext, task: TaskSpec, running: dict[str, dict[str, Any]], now: float,
         proof: settled.Settled | None) -> Freshness:
    """`proof`: every task is settled (state.settled), so each one's own files say fresh without a look."""
    entry = running.get(task.id)
    if entry is not None:
        started = entry.get("started")
        elapsed = _elapsed(now - float(started)) if isinstance(started, (int, float)) else "?"
        return Freshness(State.RUNNING, detail=f"attempt {entry.get('attempt')}, {entry.get('compute_tier')}, "
                                               f"{elapsed} elapsed")
    own = FRESH if proof is not None else ctx.freshness(task)
    if own.fresh:
        if task.id in proof.partial if proof is not None else ctx.is_partial(task):
            return Freshness(State.PARTIAL, detail=f"next worker plan: {reports.next_plan_path(task.report_path)}")
        return own
    mark = history.not_started(ctx.layout, task.worker_id)
    if mark is not None:
        return Freshness(State.INTERRUPTED, own.reasons,
                         f"not started: the run was interrupted by {mark.get('interrupted_by')}")
    last = history.last(ctx.layout, task.worker_id)
    entry = ctx.store.get(task.id)
    if last is None or (entry is not None and int(last.get("attempt") or 0) <= int(entry.get("attempt") or 0)):
        return own  # the report on record came from the last attempt (or from after it)
    if entry is None and last.get("outcome") == history.CONFLICT:
        return Freshness(State.CONFLICT, own.reasons, conflict_detail(last))
    # "running" with no live worker: its orchestrator died (or was killed) before recording the end
    if entry is None and last.get("outcome") in (history.INTERRUPTED, history.RUNNING):
        return Freshness(State.INTERRUPTED, detail=f"attempt {last.get('attempt')}; log: {last.get('log_path')}")
    if is_failure(last.get("outcome")):
        return Freshness(State.FAILED, own.reasons, failure_detail(last))
    return own


def conflict_detail(attempt: dict[str, Any]) -> str:
    """`conflicting: a.py, b.py; patch: P; worktree: W`: what a person needs to resolve, retry or discard."""
    info = attempt.get("isolation") or {}
    paths = [str(p) for p in info.get("conflicts") or []]
    shown = ", ".join(paths[:5]) + (f" (+{len(paths) - 5} more)" if len(paths) > 5 else "")
    return f"conflicting: {shown or '?'}; patch: {info.get('patch')}; worktree: {info.get('worktree')}"


def failure_detail(last: dict[str, Any]) -> str:
    """'attempt 2, exit: agent exited with code 3; log: PATH': the failed attempt, how and why it ended."""
    why = f": {last['detail']}" if last.get("detail") else ""
    rejected = f"; rejected report: {last['rejected_report']}" if last.get("rejected_report") else ""
    return f"attempt {last.get('attempt')}, {last.get('outcome')}{why}; log: {last.get('log_path')}{rejected}"


def last_failure(ctx: RunContext, task: TaskSpec) -> dict[str, Any] | None:
    """The task's last attempt when it failed (status --json, reduce_state.json): number, outcome, why, where."""
    last = history.last(ctx.layout, task.worker_id)
    if last is None or not is_failure(last.get("outcome")):
        return None
    keys = ("attempt", "outcome", "cause", "detail", "log_path", "rejected_report", "exit_code", "started_at")
    return {key: last[key] for key in keys if key in last}


def resolve(ctx: RunContext) -> dict[str, Freshness]:
    """Every task's state by id, with `upstream_stale` carried down the dependency graph."""
    running = {str(e.get("worker_id")): e for e in inflight.live_entries(inflight.read(ctx.layout))}
    now = time.time()
    proof = settled.held(ctx)
    found: dict[str, Freshness] = {}

    def visit(task: TaskSpec) -> Freshness:
        if task.id in found:
            return found[task.id]
        found[task.id] = Freshness(State.STALE)  # a cycle (validation forbids them) must not recurse forever
        own = _own(ctx, task, running, now, proof)
        upstream = tuple(ctx.task(dep).doit_name for dep in task.depends_on if visit(ctx.task(dep)).state not in DONE)
        if upstream and own.state in (*DONE, State.STALE):
            own = Freshness(State.STALE, (*own.reasons, "upstream_stale") if own.state is State.STALE
                            else ("upstream_stale",), own.detail if own.state is State.STALE else None, upstream)
        elif upstream:
            own = own._replace(upstream=upstream)
        found[task.id] = own
        return own

    for task in ctx.plan.tasks:
        visit(task)
    if proof is None and all(f.state in DONE for f in found.values()):  # so the next look is one stat per file
        settled.record(ctx, frozenset(task_id for task_id, f in found.items() if f.state is State.PARTIAL))
    return found


class Wave(NamedTuple):
    """What `rlm run --wave` starts now (`run`), and the ready tasks it leaves for a later wave."""

    run: list[TaskSpec]
    more: list[TaskSpec]  # ready, past the cap: a wave does not refill its slots (`--allow-refill` does)
    join: list[TaskSpec]  # ready join tasks: they wait for a review of the wave (`--allow-join`)


def ready_tasks(ctx: RunContext, states: dict[str, Freshness], left: frozenset[str] = frozenset()) -> list[TaskSpec]:
    """Not done, not running, every dependency done; `left`: tasks a dead orchestrator's workers still run (its
    successor ends or adopts them first), ready too and first in line."""
    ready = [task for task in ctx.plan.tasks
             if states[task.id].state not in DONE and (states[task.id].state is not State.RUNNING or task.id in left)
             and all(states[dep].state in DONE for dep in task.depends_on)]
    if len(ready) > 1:  # in the order a run starts them: longest remaining chain first (state.schedule)
        not_done = [task for task in ctx.plan.tasks if states[task.id].state not in DONE]
        ready = schedule.plan_schedule(not_done, schedule.known_durations(ctx)).order(ready)
    return sorted(ready, key=lambda task: task.id not in left)  # stable: the leftovers, then start order


def plan_wave(ctx: RunContext, states: dict[str, Freshness], cap: int | None = None, allow_join: bool = False,
              allow_refill: bool = False) -> Wave:
    """The safe-first wave: at most `cap` (default budget.max_inflight) ready tasks, no join task."""
    ready = ready_tasks(ctx, states, inflight.left_by_dead_orchestrator(ctx.layout))
    join = [] if allow_join else [task for task in ready if task.join]
    rest = [task for task in ready if allow_join or not task.join]
    limit = len(rest) if allow_refill else (ctx.plan.budget.max_inflight if cap is None else cap)
    return Wave(rest[:limit], rest[limit:], join)


def next_wave(ctx: RunContext, states: dict[str, Freshness]) -> list[TaskSpec]:
    """The tasks a plain `rlm run --wave` would run now, in the order it starts them."""
    return plan_wave(ctx, states).run


def _names(tasks: list[TaskSpec]) -> str:
    names = [t.doit_name for t in tasks]
    return ", ".join(names[:LISTED_PER_STATE]) + (f" and {len(names) - LISTED_PER_STATE} more"
                                                  if len(names) > LISTED_PER_STATE else "")


def _tasks(n: int, what: str = "task") -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def wave_line(wave: Wave) -> str | None:
    """What the next `rlm run --wave` runs, and what it leaves and why; None when nothing is ready."""
    if wave.run:
        count = f"{len(wave.run)} tasks in start order" if len(wave.run) > 1 else "1 task"
        line = f"next wave: {count} ({_names(wave.run)}); `rlm run --wave` runs only these"
        if wave.more:
            line += f"; {len(wave.more)} more ready (a later wave, or `--allow-refill`)"
        if wave.join:
            line += f"; {_tasks(len(wave.join), 'join task')} ({_names(wave.join)}) wait for `--allow-join`"
        return line
    if wave.join:
        return (f"next wave: only join tasks are ready: {_tasks(len(wave.join), 'join task')} ({_names(wave.join)}); "
                "review the reports they read, then `rlm run --wave --allow-join`")
    return None


def collect(ctx: RunContext) -> list[tuple[Any, Freshness]]:
    states = resolve(ctx)
    ctx.save_cache()
    return [(task, states[task.id]) for task in ctx.plan.tasks]


def accepted(task: TaskSpec, f: Freshness) -> bool:
    """What `rlm check` and `final` count as done: fresh, or partial where the task accepts it."""
    return f.fresh or (f.state is State.PARTIAL and task.accept_partial)


def produced_by(ctx: RunContext, task: TaskSpec) -> tuple[int, str | None]:
    """(number of the attempt that produced the report, its tier) from provenance; (0, None) without an entry.

    The number is the one in the log file's name and the progress lines, never a count per run."""
    entry = ctx.store.get(task.id) or {}
    attempt = entry.get("attempt")
    return (attempt if isinstance(attempt, int) else (1 if entry else 0)), entry.get("compute_tier")


def why(f: Freshness) -> str:
    """'input_changed,upstream_stale (changed: a.txt; upstream: map:a)': reasons, then the details."""
    upstream = ("upstream: " + ", ".join(f.upstream)) if "upstream_stale" in f.reasons else None
    details = [d for d in (f.detail, upstream) if d]
    text = ",".join(f.reasons)
    if details:
        text = f"{text} ({'; '.join(details)})" if text else "; ".join(details)
    return text


def as_json(ctx: RunContext, rows: list[tuple[TaskSpec, Freshness]]) -> dict[str, Any]:
    counts = Counter(f.state.value for _, f in rows)
    started = history.highest_attempts(ctx.layout, logs=False)
    tasks = []
    for task, f in rows:
        attempts, tier = produced_by(ctx, task)
        row = {
            "id": task.id,
            "doit_name": task.doit_name,
            "state": f.state.value,
            "reasons": list(f.reasons),
            "detail": f.detail,
            "upstream": list(f.upstream),
            "report_path": task.report_path,
            "attempt": attempts,
            "attempts": started.get(task.id, 0),
            "compute_tier": tier,
            **({"foreach": {"name": task.fanout, "item": task.item}} if task.fanout else {}),
        }
        if f.state is State.PARTIAL:
            row["next_plan_path"] = reports.next_plan_path(task.report_path)
            row["accept_partial"] = task.accept_partial
        if f.state is State.FAILED:
            row["failure"] = last_failure(ctx, task)
        tasks.append(row)
    running, failed = activity(ctx, rows)
    wave = plan_wave(ctx, {task.id: f for task, f in rows})
    return {
        "next_wave": [t.doit_name for t in wave.run],
        "next_wave_waiting": {"more": [t.doit_name for t in wave.more], "join": [t.doit_name for t in wave.join]},
        "run_id": ctx.plan.run_id,
        "counts": {state.value: counts.get(state.value, 0) for state in STATE_ORDER},
        "total": len(rows),
        "running": running,
        "failed": failed,
        "tasks": tasks,
        "fanouts": {name: fanout_counts(rows, name) for name, _ in ctx.plan.fanouts},
        "usage": usage.summary(ctx),
        "orphaned": orphaned(ctx),
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
    # the four states of a task's own files always; running, interrupted, partial when there are any
    parts = ", ".join(f"{counts.get(s, 0)} {s.value}" for s in STATE_ORDER if s in STATE_ORDER[:4] or counts.get(s))
    return f"run {ctx.plan.run_id}: {len(rows)} tasks: {parts}"


def usage_line(ctx: RunContext) -> str | None:
    """The run's tokens and cost so far; None before any attempt reported usage."""
    spent = usage.spent(ctx)
    return f"usage: {spent.line()}" if spent.attempts else None


def task_line(task: TaskSpec, f: Freshness, attempt: int = 0, tier: str | None = None) -> str:
    """One task; the attempt and tier that made the report are shown when a retry or an escalation made it."""
    reason = why(f)
    line = f"{f.state.value:<8} {task.doit_name:<30} {reason + '  ' if reason else ''}{task.report_path}"
    if f.state in DONE and (attempt > 1 or (tier is not None and tier != task.compute_tier)):
        line += f"  (attempt {attempt}, {tier})"
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
    return running, [task.id for task, f in rows if f.state is State.FAILED]


def orphaned(ctx: RunContext) -> dict[str, Any] | None:
    """The orchestrator inflight.json names when workers it started still run but it does not (killed, or its
    machine's session ended): {"pid", "workers"}; None while it lives or nothing runs."""
    data = inflight.read(ctx.layout)
    live = inflight.live_entries(data)
    if not live or inflight.orchestrator_alive(data):
        return None
    return {"pid": (data.get("orchestrator") or {}).get("pid"), "workers": len(live)}


def orphaned_line(ctx: RunContext) -> str | None:
    dead = orphaned(ctx)
    if dead is None:
        return None
    return (f"no live orchestrator: its {dead['workers']} running worker(s) outlived it (pid {dead['pid']}); "
            "`rlm run --adopt` waits for them and keeps their reports, `doit` ends them")


def activity_line(ctx: RunContext, rows: list[tuple[TaskSpec, Freshness]]) -> str | None:
    running, failed = activity(ctx, rows)
    parts = []
    if running:
        parts.append(f"{len(running)} running")
    if failed:
        shown = ", ".join(failed[:LISTED_PER_STATE]) + (" ..." if len(failed) > LISTED_PER_STATE else "")
        parts.append(f"{len(failed)} failed ({shown}); logs: {ctx.layout.logs_rel}/")
    return "; ".join(parts) if parts else None


def check(ctx: RunContext, rows: list[tuple[Any, Freshness]]) -> tuple[int, list[str]]:
    """`rlm check`: (0 when every task is fresh or an accepted partial, else 1; the lines to print)."""
    lines = [summary_line(ctx, rows)]
    not_done = [(task, f) for task, f in rows if not accepted(task, f)]
    lines += [task_line(task, f) for task, f in not_done]
    if any(f.state is State.PARTIAL for _, f in not_done):
        lines.append("partial reports stop `rlm check` unless their task sets `accept_partial: true`")
    return (1 if not_done else 0), lines
