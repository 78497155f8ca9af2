"""Dispatch order: doit starts ready tasks by rank (state.schedule), not in the order they became ready.

doit's TaskDispatcher keeps the tasks it may hand to a free slot in a FIFO
(`ready`); a task whose last dependency just finished joins the back of it,
behind every independent task declared before it, and tasks released together
come out of a set in no defined order. rlm swaps that FIFO for a priority
queue before the first task is dispatched: worker tasks leave it highest rank
first (ties: arrival order), everything else (plan, the groups, tasks already
fresh) first of all, since they occupy no slot. doit's graph, its dependency
checks and its runner are untouched.

`RLM_DISPATCH_ORDER=declared` keeps doit's own order (for comparison: bench/makespan.py).
"""

from __future__ import annotations

import heapq
import itertools
import os
import sys
from typing import Any

from doit.runner import Runner

from rlm_tasks.state import schedule
from rlm_tasks.state.context import RunContext

ORDER_ENV = "RLM_DISPATCH_ORDER"
FIRST = float("-inf")


class RankedReady:
    """The dispatcher's `ready` queue (doit uses append, popleft and truth), ordered by rank."""

    def __init__(self, priority: dict[str, float], queued: Any = ()) -> None:
        self.priority = priority  # doit name -> rank of the worker tasks that may still run
        self._heap: list[tuple[float, int, Any]] = []
        self._arrival = itertools.count()
        for node in queued:
            self.append(node)

    def append(self, node: Any) -> None:
        key = -self.priority.get(node.task.name, -FIRST)
        heapq.heappush(self._heap, (key, next(self._arrival), node))

    def popleft(self) -> Any:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


def priorities(ctx: RunContext) -> dict[str, float]:
    """doit name -> rank of each worker task this run may start; {} when none may (a no-op reads nothing)."""
    pending = [task for task in ctx.plan.tasks
               if task.id not in ctx.settled_partial and task.doit_name not in ctx.held_back]
    if not pending:
        return {}
    ranks = schedule.plan_schedule(pending, schedule.known_durations(ctx)).rank
    return {task.doit_name: ranks[task.id] for task in pending}


def install(ctx: RunContext) -> bool:
    """Called from the reporter's `initialize`, which doit calls from Runner.run_all before any task is
    dispatched: give that run's dispatcher the ranked queue. False when the order stays doit's."""
    if os.environ.get(ORDER_ENV, "").strip().lower() == "declared":
        return False
    frame = sys._getframe(1)
    while frame is not None and frame.f_code is not Runner.run_all.__code__:
        frame = frame.f_back  # type: ignore[assignment]
    dispatcher = frame.f_locals.get("task_dispatcher") if frame is not None else None
    if dispatcher is None or not hasattr(dispatcher, "ready"):
        return False
    found = priorities(ctx)
    if not found:
        return False
    dispatcher.ready = RankedReady(found, dispatcher.ready)
    return True
