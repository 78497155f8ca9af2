"""Settled tasks: fresh, with every dependency fresh, so nothing a run does can change them.

When every task was settled last time and provenance.json, its journal, every report and
every input (a directory: every file under it too) still have the stat signatures they had
then, they all still are: a no-op `doit`, `rlm check` or `rlm status` proves it with one
stat per file, and reads no report, no provenance and no template. What else was known then
(which reports are partial) is kept with the mark, under the same signatures.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from rlm_tasks.config import paths as config_paths
from rlm_tasks.config.records import TaskSpec
from rlm_tasks.state.cache import Signature
from rlm_tasks.state.context import RunContext

MARK = "settled"


class Settled(NamedTuple):
    tasks: frozenset[str]  # ids of the settled tasks
    partial: frozenset[str]  # of them: reports with a Self-termination section
    # from the mark only ({} otherwise): each report's stat signature when it was last proven fresh (closing check)
    reports: dict[str, Signature | None]


def _inputs(ctx: RunContext) -> list[str]:
    return list(dict.fromkeys(path for task in ctx.plan.tasks for path in task.inputs))  # once each, plan order


def _files(ctx: RunContext, directories: frozenset[str]) -> list[str] | None:
    """Every file the verdict rests on, reports first (in plan order); None when no mark can vouch for it.

    An input that is a directory counts with every file under it: a file edited in place, or added
    below a subdirectory, leaves the directory's own stat as it was."""
    if ctx.cache is None or any(task.watch for task in ctx.plan.tasks):  # globs can match new files
        return None
    files = [str(ctx.layout.provenance_json), str(ctx.store.journal_path), *ctx.report_files_abs]
    for rel in _inputs(ctx):
        files.append(ctx.abs_str(rel))
        if rel in directories:
            files.extend(ctx.abs_str(name) for name in config_paths.input_files(ctx.plan.root, rel))
    return files


def held(ctx: RunContext) -> Settled | None:
    """Every task settled, proven by the mark alone; None when it does not hold (then ask each task)."""
    if ctx.cache is None:
        return None
    value = ctx.cache.mark_value(MARK)
    if not isinstance(value, dict):
        return None
    partial, directories = value.get("partial"), value.get("directories")
    if not (isinstance(partial, list) and isinstance(directories, list)
            and all(isinstance(p, str) for p in [*partial, *directories])):
        return None
    files = _files(ctx, frozenset(directories))
    if files is None:
        return None
    signatures = ctx.cache.mark_signatures(MARK, files)
    if signatures is None:
        return None
    reports = {task.id: signatures[2 + i] for i, task in enumerate(ctx.plan.tasks)}
    return Settled(frozenset(reports), frozenset(partial), reports)


def record(ctx: RunContext, partial: frozenset[str]) -> None:
    """Every task is settled now: mark the files it rests on (not when one changed a moment ago)."""
    directories = frozenset(rel for rel in _inputs(ctx) if os.path.isdir(ctx.abs_str(rel)))
    files = _files(ctx, directories)
    if files is not None and ctx.cache is not None:
        ctx.cache.set_mark(MARK, files, value={"partial": sorted(partial), "directories": sorted(directories)})


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
