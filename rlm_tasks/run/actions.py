"""What rlm's doit tasks do when they run: a worker task's attempts, `doit clean`'s move to history, DECIDE, the HTML
report and the archive. A user's mistake becomes a one-line task failure; a bug, a crash log and one line."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

from doit.exceptions import TaskFailed

from rlm_tasks.config.records import TaskSpec
from rlm_tasks.errors import UserError, exit_with, resource_error
from rlm_tasks.layout import CRASH_LOG
from rlm_tasks.lifecycle import archive
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.phases import final, report_html
from rlm_tasks.run import attempts, reportfiles
from rlm_tasks.run.reporter import BudgetStop, ConfigFailure, FailFastStop, Interrupted
from rlm_tasks.run.runstate import Run
from rlm_tasks.state import reports
from rlm_tasks.state.context import RunContext


def bug(ctx: RunContext) -> TaskFailed:
    """An exception that is no user error: its traceback goes to the crash log, one line to the summary. A full
    disk, no file descriptors, a process limit... is no bug: one line naming the resource and the path."""
    found = resource_error(sys.exc_info()[1] or Exception())
    if found is not None:
        return TaskFailed(str(found))
    try:
        path = ctx.layout.abs(CRASH_LOG)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc(), encoding="utf-8")
        where = f"details in {CRASH_LOG}"
    except OSError:
        where = "no crash log could be written"
    return TaskFailed(f"unexpected error ({where}); please report it")


def worker_action(run: Run, task: TaskSpec) -> Callable[[], Any]:
    ctx = run.ctx

    def action() -> Any:
        try:
            outcome = attempts.run_task(run, task)  # claims the budget per attempt
        except UserError as exc:
            return TaskFailed(str(exc))
        except Exception:  # a bug: doit would say only "PythonAction Error"
            return bug(ctx)
        if not outcome.ok:
            if outcome.interrupted:
                return Interrupted(outcome.message)
            if outcome.stopped:
                return FailFastStop(outcome.message)
            return BudgetStop(outcome.message) if outcome.budget_exhausted else TaskFailed(outcome.message)
        return {"report_path": outcome.message, "attempt": outcome.attempt, "duration": round(outcome.duration, 3),
                "compute_tier": outcome.tier, "attempts": outcome.attempts,
                "partial": reports.is_partial(ctx.report_file(task))}

    action.__name__ = f"run_{task.mode}_{task.id}"
    return action


def clean_action(ctx: RunContext, task: TaskSpec) -> Callable[..., None]:
    """`doit clean map:<id>`: the report and its provenance entry go to history; the task is missing.

    It takes the run lock, so it never races a run; `doit clean -n` says what it would move.
    """
    def report_to_history(dryrun: bool = False) -> None:
        if dryrun:
            there = ctx.layout.abs(task.report_path).is_file()
            print(f"  {task.doit_name}: " + (f"would move {task.report_path} to history" if there else "no report"))
            return
        lock = RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours)
        try:
            lock.acquire()
        except UserError as exc:  # locked by a run: exit 3 with its one line, as `doit` itself would
            exit_with(exc)
        try:
            moved = reportfiles.retire_report(ctx, task)
        finally:
            lock.release()
        print(f"  {task.doit_name}: " + (f"report moved to {moved}" if moved else "no report"), flush=True)

    report_to_history.__qualname__ = "report_to_history"  # what `doit clean` prints
    return report_to_history


def final_action(ctx: RunContext) -> Any:
    """`doit final` says what `rlm final` says: the paths written, or (as a task failure) why it was refused."""
    try:
        result = final.write(ctx)
    except UserError as exc:  # a mistake in rlm.yaml exits 2, a refusal 1: as `rlm final`
        return ConfigFailure(str(exc)) if exc.exit_code == 2 else TaskFailed(str(exc))
    print(final.summary_line(ctx, result), flush=True)
    return None


def report_action(ctx: RunContext) -> None:
    """`doit report`: the HTML report of the run, and where it is."""
    path = report_html.write(ctx)
    print(f"report: {report_html.shown_path(ctx, path)}", flush=True)


def quiet(write: Callable[[RunContext], Any], ctx: RunContext) -> Any:
    """Run a writer as a doit action: user errors become one-line task failures."""
    try:
        write(ctx)
    except UserError as exc:
        return TaskFailed(str(exc))
    return None


def archive_action(ctx: RunContext) -> TaskFailed | None:
    """`doit archive`: the run session holds the run lock and releases it when doit ends."""
    try:
        result = archive.create(ctx)
    except UserError as exc:
        return TaskFailed(str(exc))
    sys.stdout.write("".join(f"rlm: {line}\n" for line in result.lines(ctx.plan.run_id)))
    return None

