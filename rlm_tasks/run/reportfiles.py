"""A task's report_path before and after its worker: never written through a link, never a file the task did not
write, an earlier report kept in history (a rerun, `doit clean`), a rejected one moved aside."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rlm_tasks import jsonio
from rlm_tasks.config import paths as config_paths
from rlm_tasks.config.records import TaskSpec
from rlm_tasks.layout import RunLayout
from rlm_tasks.run import inflight
from rlm_tasks.state import reports
from rlm_tasks.state.context import RunContext


def rejected_rel(layout: RunLayout, worker_id: str, attempt: int) -> str:
    return f"{layout.artifacts_rel}/reports/{worker_id}.attempt-{attempt}.rejected.md"


def writable(ctx: RunContext, path: Path, what: str) -> Path:
    """`path`, checked at the moment of writing: a worker may have linked one of its folders out of the repository
    since validation. Raises UnsafePath (a one-line task failure)."""
    return config_paths.confined(ctx.plan.root, os.path.relpath(path, ctx.plan.root), what)


def move_aside(ctx: RunContext, src: Path, dest: Path) -> None:
    writable(ctx, dest, "history")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not reports.set_aside_bounded(src, dest):  # one over the cap keeps only its ends (committed folder)
        shutil.move(str(src), str(dest))


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.stem}.{n}{path.suffix}").exists():
        n += 1
    return path.with_name(f"{path.stem}.{n}{path.suffix}")


def foreign_report(ctx: RunContext, sess: inflight.Session, task: TaskSpec, report: Path) -> str | None:
    """Why the worker must not start: report_path leads outside the repository, or holds a file that is not
    a report of this task (no provenance, no attempt of ours left it). Such a file is never moved or overwritten."""
    try:
        config_paths.confined(ctx.plan.root, task.report_path, "report_path")
    except config_paths.UnsafePath as exc:
        return str(exc)
    # Validation judged the path as it was; a worker may since have linked a folder on it into .git/ or .rlm/.
    config_rel = os.path.relpath(ctx.plan.config_path, ctx.plan.root)
    moved = config_paths.report_path_problem(ctx.plan.root, task.report_path, ctx.plan.run_id, config_rel)
    if moved is not None:
        return f"{moved}; not touched"
    if not os.path.lexists(report):
        return None
    if os.path.islink(report):
        return f"report_path {task.report_path} is a symlink; not touched (remove it to run the task)"
    in_run_folder = task.report_path.startswith(f"{ctx.layout.reports_rel}/")
    # The run's own report folder holds only what workers wrote there; such a file is kept in history/.
    if not in_run_folder and ctx.store.get(task.id) is None and sess.ended.get(task.id) is None:
        return (f"report_path {task.report_path} holds a file this task did not write (no provenance for it); "
                "not touched (move it away or choose another report_path)")
    return None


def set_aside_previous(ctx: RunContext, sess: inflight.Session, task: TaskSpec, report: Path) -> None:
    """Before a worker starts: drop the completion marker, keep an earlier report out of the way."""
    layout = ctx.layout
    entry = ctx.store.get(task.id)
    ctx.store.forget(task.id)
    if not report.exists():
        return
    orphan = sess.ended.get(task.id)
    if entry is None and orphan is not None:
        # left by an attempt of a dead orchestrator: it never validated
        dest = layout.abs(rejected_rel(layout, task.worker_id, int(orphan.get("attempt") or 0)))
    else:
        n = int(entry.get("attempt") or 0) if entry else 0
        dest = layout.abs(layout.history_rel(task.worker_id, n))
    move_aside(ctx, report, _unique(dest))


def retire_report(ctx: RunContext, task: TaskSpec) -> str | None:
    """`doit clean`: the report and its provenance entry go to history, so the task is missing.

    Returns where the report went (None when there was none).
    """
    entry = ctx.store.get(task.id)
    report = ctx.layout.abs(task.report_path)
    dest = None
    if report.is_file():
        n = int(entry.get("attempt") or 0) if entry else 0
        dest = _unique(ctx.layout.abs(ctx.layout.history_rel(task.worker_id, n)))
        if entry is not None:  # kept beside the report it describes, written before anything moves
            jsonio.write_json(dest.with_suffix(".provenance.json"), entry)
        move_aside(ctx, report, dest)
    ctx.store.forget(task.id)
    ctx.store.compact()  # `doit clean` is not a run: nothing else would fold the journal into provenance.json
    return dest.relative_to(ctx.layout.root).as_posix() if dest else None
