"""Settled tasks: fresh, with every dependency fresh, so nothing a run does can change them.

When every task was settled last time and provenance.json, its journal, every report and every
input still have the stat signatures they had then, they all still are: a no-op `doit`,
`rlm check` or `rlm status` proves it with one stat per file, and reads no report, no
provenance and no template. What else was known then (which reports are partial) is kept
with the mark, under the same signatures.
"""

from __future__ import annotations

from typing import NamedTuple

from rlm_tasks.config.plan import TaskSpec
from rlm_tasks.state.cache import Signature
from rlm_tasks.state.context import RunContext

MARK = "settled"


class Settled(NamedTuple):
    tasks: frozenset[str]  # ids of the settled tasks
    partial: frozenset[str]  # of them: reports with a Self-termination section
    # from the mark only ({} otherwise): each report's stat signature when it was last proven fresh (closing check)
    reports: dict[str, Signature | None]


def _files(ctx: RunContext) -> list[str] | None:
    """Every file the verdict rests on, reports first (in plan order); None when no mark can vouch for it."""
    if ctx.cache is None or any(task.watch for task in ctx.plan.tasks):  # globs can match new files
        return None
    return [str(ctx.layout.provenance_json), str(ctx.store.journal_path),
            *ctx.report_files_abs,
            *dict.fromkeys(ctx.abs_str(path) for task in ctx.plan.tasks for path in task.inputs)]  # once each


def held(ctx: RunContext) -> Settled | None:
    """Every task settled, proven by the mark alone; None when it does not hold (then ask each task)."""
    files = _files(ctx)
    if files is None or ctx.cache is None:
        return None
    partial = ctx.cache.mark_value(MARK)
    if not isinstance(partial, list) or not all(isinstance(p, str) for p in partial):
        return None
    signatures = ctx.cache.mark_signatures(MARK, files)
    if signatures is None:
        return None
    reports = {task.id: signatures[2 + i] for i, task in enumerate(ctx.plan.tasks)}
    return Settled(frozenset(reports), frozenset(partial), reports)


def record(ctx: RunContext, partial: frozenset[str]) -> None:
    """Every task is settled now: mark the files it rests on (not when one changed a moment ago)."""
    files = _files(ctx)
    if files is not None and ctx.cache is not None:
        ctx.cache.set_mark(MARK, files, value=sorted(partial))


def settle(ctx: RunContext) -> Settled:
    """The settled tasks: from the mark when it holds, else each task's freshness (and then marked if all are)."""
    found = held(ctx)
    if found is not None:
        return found
    fresh: dict[str, bool] = {}

    def visit(task: TaskSpec, seen: frozenset[str]) -> bool:
        if task.id not in fresh:
            fresh[task.id] = (task.id not in seen and ctx.freshness(task).fresh
                              and all(visit(ctx.task(dep), seen | {task.id}) for dep in task.depends_on))
        return fresh[task.id]

    for task in ctx.plan.tasks:
        visit(task, frozenset())
    tasks = frozenset(task_id for task_id, ok in fresh.items() if ok)
    partial = frozenset(task_id for task_id in tasks if ctx.is_partial(ctx.task(task_id)))
    if len(tasks) == len(ctx.plan.tasks):
        record(ctx, partial)
    return Settled(tasks, partial, {})
