"""The order tasks start in: longest remaining path first (critical path), from what earlier attempts took.

A task's rank is its expected duration plus the largest rank among the tasks
that depend on it: how long the run still takes from the moment it starts, if
slots were unlimited. Starting the ready task of highest rank first is the
classic list-scheduling rule for a DAG; it keeps the long chains moving and
starts a long task declared last before the short ones declared before it.
A task's rank is always above each of its dependents' (durations are positive),
so the order is also a valid order for the graph.

Expected durations come from the task's own earlier attempts (the accepted
attempt in provenance, else the attempt history), then the median of its
compute tier's known tasks, then the median of all known tasks, then one unit
(structure alone decides: chain lengths).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable
from typing import Any, NamedTuple

from rlm_tasks.clock import parse_iso
from rlm_tasks.config.records import TaskSpec
from rlm_tasks.state import history
from rlm_tasks.state.context import RunContext

UNKNOWN_SECONDS = 1.0  # nothing known about any task: every task counts the same
MIN_SECONDS = 0.001  # a recorded 0 s must not make a task rank level with its dependents
NOT_TIMED = ("start_error", "interrupted", history.RUNNING)  # attempts whose duration says nothing of the task


class Schedule(NamedTuple):
    rank: dict[str, float]  # task id -> expected seconds from its start to the end of its longest chain
    expected: dict[str, float]  # task id -> expected seconds of the task itself
    known: frozenset[str]  # tasks whose expectation comes from their own earlier attempts

    def order(self, tasks: Iterable[TaskSpec]) -> list[TaskSpec]:
        """`tasks` in start order: highest rank first, declaration order among equals."""
        indexed = list(enumerate(tasks))
        indexed.sort(key=lambda pair: (-self.rank[pair[1].id], pair[0]))
        return [task for _, task in indexed]


def attempt_seconds(attempt: dict[str, Any]) -> float | None:
    """How long one recorded attempt ran: its `duration`, else finished_at - started_at; None when unknown."""
    if attempt.get("outcome") in NOT_TIMED:
        return None
    duration = attempt.get("duration")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration == duration >= 0:
        return float(duration)
    started, finished = parse_iso(attempt.get("started_at")), parse_iso(attempt.get("finished_at"))
    if started is None or finished is None or finished < started:
        return None
    return (finished - started).total_seconds()


def _from_entry(entry: dict[str, Any]) -> float | None:
    attempts = entry.get("attempts")
    if isinstance(attempts, list):
        for attempt in reversed(attempts):
            if isinstance(attempt, dict) and entry.get("attempt") in (None, attempt.get("attempt")):
                found = attempt_seconds(attempt)
                if found is not None:
                    return found
    return attempt_seconds(entry)


def known_durations(ctx: RunContext) -> dict[str, float]:
    """Task id -> seconds its last timed attempt took: the accepted one in provenance, else the attempt history."""
    found: dict[str, float] = {}
    for task_id, entry in ctx.store.items():
        seconds = _from_entry(entry)
        if seconds is not None:
            found[task_id] = seconds
    folder = ctx.layout.abs(ctx.layout.attempts_rel("x")).parent
    try:
        names = set(os.listdir(folder))
    except OSError:
        names = set()
    for task in ctx.plan.tasks:  # only the tasks that have a history file: one listdir, no stat per task
        if task.id in found or f"{task.worker_id}.json" not in names:
            continue
        for attempt in reversed(history.read(ctx.layout, task.worker_id)):
            seconds = attempt_seconds(attempt)
            if seconds is not None:
                found[task.id] = seconds
                break
    return found


def plan_schedule(tasks: list[TaskSpec], durations: dict[str, float]) -> Schedule:
    """Ranks of `tasks` (dependencies outside the list are ignored) from the known `durations` (seconds)."""
    by_tier: dict[str, list[float]] = {}
    for task in tasks:
        if task.id in durations:
            by_tier.setdefault(task.compute_tier, []).append(durations[task.id])
    everything = [seconds for values in by_tier.values() for seconds in values]
    overall = statistics.median(everything) if everything else UNKNOWN_SECONDS
    tier_median = {tier: statistics.median(values) for tier, values in by_tier.items()}
    expected = {task.id: max(MIN_SECONDS, durations.get(task.id, tier_median.get(task.compute_tier, overall)))
                for task in tasks}
    ids = set(expected)
    dependents: dict[str, list[str]] = {task_id: [] for task_id in ids}
    waiting = {task.id: 0 for task in tasks}
    for task in tasks:
        for dep in set(task.depends_on):
            if dep in ids:
                dependents[dep].append(task.id)
                waiting[task.id] += 1
    # Kahn's order from the sources, then ranks from the sinks back
    topo = [task_id for task_id, count in waiting.items() if count == 0]
    for task_id in topo:
        for dependent in dependents[task_id]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                topo.append(dependent)
    rank: dict[str, float] = {}
    for task_id in reversed(topo):
        rank[task_id] = expected[task_id] + max((rank[d] for d in dependents[task_id]), default=0.0)
    for task_id in ids - rank.keys():  # a cycle (validation refuses them): declaration order decides
        rank[task_id] = expected[task_id]
    return Schedule(rank, expected, frozenset(durations) & ids)


def for_context(ctx: RunContext) -> Schedule:
    return plan_schedule(list(ctx.plan.tasks), known_durations(ctx))


def lower_bound(schedule: Schedule, slots: int) -> float:
    """max(critical path, total work / slots): no order can finish the expected work sooner."""
    if not schedule.rank:
        return 0.0
    return max(max(schedule.rank.values()), sum(schedule.expected.values()) / max(1, slots))
