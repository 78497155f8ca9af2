"""Plan → doit task dicts. dodo.py hands `doit_namespace()` to doit and nothing else."""

from __future__ import annotations

import functools
import gc
import inspect
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from doit.cmd_base import NamespaceTaskLoader
from doit.exceptions import TaskFailed

from rlm_tasks.config.records import ConfigError, TaskSpec
from rlm_tasks.errors import UserError, exit_with, resource_error
from rlm_tasks.layout import CRASH_LOG, DOIT_DB
from rlm_tasks.lifecycle import archive
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.phases import final, reduce, report_html
from rlm_tasks.render import escape
from rlm_tasks.run import attempts, doit_commands, doitdb, worker
from rlm_tasks.run.reporter import BudgetStop
from rlm_tasks.run.session import reporter_class
from rlm_tasks.state import planfile, reports, status
from rlm_tasks.state import settled as state_settled
from rlm_tasks.state.cache import stat_signature
from rlm_tasks.state.context import RunContext, load_context

# Our actions print nothing. doit's capture swaps sys.stdout/sys.stderr per action,
# and with parallel threads the swaps interleave and leave a dead stream behind.
QUIET: dict[str, Any] = {"verbosity": 0, "io": {"capture": False}}
DEFAULT_TASKS = ["plan", "map", "verify", "reduce", "deferred"]


def _bug(ctx: RunContext) -> TaskFailed:
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


def _worker_action(ctx: RunContext, task: TaskSpec) -> Callable[[], Any]:
    def action() -> Any:
        try:
            outcome = attempts.run_task(ctx, task)  # claims the budget per attempt
        except UserError as exc:
            return TaskFailed(str(exc))
        except Exception:  # a bug: doit would say only "PythonAction Error"
            return _bug(ctx)
        if not outcome.ok:
            return BudgetStop(outcome.message) if outcome.budget_exhausted else TaskFailed(outcome.message)
        return {"report_path": outcome.message, "attempt": outcome.attempt, "duration": round(outcome.duration, 3),
                "compute_tier": outcome.tier, "attempts": outcome.attempts,
                "partial": reports.is_partial(ctx.report_file(task))}

    action.__name__ = f"run_{task.mode}_{task.id}"
    return action


def _clean_action(ctx: RunContext, task: TaskSpec) -> Callable[..., None]:
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
            moved = attempts.retire_report(ctx, task)
        finally:
            lock.release()
        print(f"  {task.doit_name}: " + (f"report moved to {moved}" if moved else "no report"), flush=True)

    report_to_history.__qualname__ = "report_to_history"  # what `doit clean` prints
    return report_to_history


class Fresh:
    """A worker task's doit `uptodate`: provenance decides; its repr is the reason `doit info` shows."""

    def __init__(self, ctx: RunContext, task: TaskSpec, forgotten: bool) -> None:
        self.ctx, self.task, self.forgotten = ctx, task, forgotten
        self.why = "not checked yet"

    def __call__(self) -> bool:
        if self.forgotten:
            self.why = "forgotten (`doit forget` or `rlm run --force`): runs again though its report is fresh"
            return False
        found = self.ctx.freshness(self.task)
        because = ", ".join(found.reasons) or found.detail
        self.why = found.state.value + (f" ({because})" if because else "")
        if found.fresh:
            self.why += ": the report is valid and every digest in provenance.json matches today's"
        return found.fresh

    def __repr__(self) -> str:
        return f"rlm provenance: {self.why}; `rlm status` explains every reason"


class Why(Fresh):
    """`doit info`'s `meta` line: the same verdict, worked out only when doit prints it (fresh tasks too)."""

    def __repr__(self) -> str:
        self()
        return self.why


def settled(ctx: RunContext) -> frozenset[str]:
    """Tasks fresh now whose dependencies, transitively, are fresh too: nothing this run does can change them.

    A no-op run proves it for all of them with one stat per file (state.settled); what that proof
    knew (partial reports, report signatures) serves the reporter and the closing check.
    """
    found = state_settled.settle(ctx)
    ctx.settled_partial = {task_id: task_id in found.partial for task_id in found.tasks}
    ctx.settled_reports = found.reports
    return found.tasks


# What only one doit command reads: `doit clean` runs a task's clean actions, `doit info` prints its meta.
# A task dict carries them only for that command (or when the command is not known): doit makes a
# PythonAction of every clean action, and for a 10,000-task run both were 10 MB nobody used.
ONLY_FOR_COMMAND = {"clean": "clean", "meta": "info"}


def worker_task(ctx: RunContext, task: TaskSpec, settled: bool = False, forgotten: bool = False,
                command: str | None = None) -> dict[str, Any]:
    # A settled task gets a plain True: doit then skips it without calling back (and without
    # inspecting a callable's signature), which is most of a no-op run's time per task.
    task_dict = {
        "name": task.id,
        "doc": escape.one_line(task.goal.splitlines()[0], 80) if task.goal.strip() else task.id,  # no escapes
        "actions": [_worker_action(ctx, task)],
        # doit runs a task whose target is missing whatever `uptodate` says; a held-back task has none
        "targets": [] if task.doit_name in ctx.held_back else [ctx.report_abs[task.id]],
        "task_dep": ["plan", *(ctx.task(dep).doit_name for dep in task.depends_on)],
        "uptodate": [True if settled or task.doit_name in ctx.held_back else Fresh(ctx, task, forgotten)],
        **QUIET,
    }
    if command in (None, ONLY_FOR_COMMAND["meta"]):
        task_dict["meta"] = {"rlm": Why(ctx, task, forgotten)}
    if command in (None, ONLY_FOR_COMMAND["clean"]):
        task_dict["clean"] = [_clean_action(ctx, task)]
    return task_dict


def task_generators(ctx: RunContext, command: str | None = None) -> dict[str, Callable[[], Any]]:
    """The task_* functions doit loads; `command`: the doit command loading them, when known (ONLY_FOR_COMMAND)."""
    memo: dict[str, Any] = {}

    def is_forgotten(task: TaskSpec) -> bool:
        if "forgotten" not in memo:
            memo["forgotten"] = doitdb.forgotten(ctx.layout.doit_db)
        return task.doit_name in memo["forgotten"]

    def is_settled(task: TaskSpec) -> bool:
        if "settled" not in memo:
            memo["settled"] = settled(ctx)
        return task.id in memo["settled"] and not is_forgotten(task)

    def summary_current(name: str, output: Callable[[RunContext], str]) -> bool:
        # reduce and deferred summarise the same files, and both are checked once the workers are done
        if "summary" not in memo:
            memo["summary"] = _summary_signatures(ctx)
        return _summary_current(ctx, name, output, memo["summary"])

    def task_plan() -> dict[str, Any]:
        """Validate rlm.yaml, write plan.json and the run contract."""
        return {
            "actions": [lambda: _quiet(planfile.write_plan, ctx)],  # a refused iteration fails here, in one line
            "uptodate": [lambda: _plan_current(ctx)],
            **QUIET,
        }

    def task_map() -> Iterator[dict[str, Any]]:
        """Run the MAP workers whose reports are missing, invalid or stale."""
        yield {"basename": "map", "name": None, "doc": "all map tasks"}
        for task in ctx.plan.tasks:
            if task.mode == "map":
                yield worker_task(ctx, task, is_settled(task), is_forgotten(task), command)

    def task_verify() -> Iterator[dict[str, Any]]:
        """Run the VERIFY workers, after the tasks they depend on."""
        yield {"basename": "verify", "name": None, "doc": "all verify tasks"}
        for task in ctx.plan.tasks:
            if task.mode == "verify":
                yield worker_task(ctx, task, is_settled(task), is_forgotten(task), command)

    def task_reduce() -> dict[str, Any]:
        """REDUCE: write reduce_state.json (states, sizes, ages, attempts; never report text)."""
        return {"actions": [lambda: _summarise(ctx, "reduce", reduce.write_inventory, reduce.reduce_state_path)],
                "task_dep": ["map", "verify"],
                "uptodate": [lambda: summary_current("reduce", reduce.reduce_state_path)], **QUIET}

    def task_deferred() -> dict[str, Any]:
        """Collect every report's deferred opportunities into deferred.json."""
        return {"actions": [lambda: _summarise(ctx, "deferred", reduce.write_deferred, reduce.deferred_path)],
                "task_dep": ["map", "verify"],
                "uptodate": [lambda: summary_current("deferred", reduce.deferred_path)], **QUIET}

    def task_final() -> dict[str, Any]:
        """DECIDE: final.json and final.md (refused until verify is fresh and decision: is written)."""
        return {"actions": [lambda: _final(ctx)], "task_dep": ["reduce", "deferred"],
                "uptodate": [False], **QUIET}

    def task_archive() -> dict[str, Any]:
        """Archive the finished run under .rlm/archive/, trim its logs, TTL cleanup (`doit archive` only)."""
        return {"actions": [lambda: _archive(ctx)], "task_dep": ["final"], "uptodate": [False], **QUIET}

    def task_report() -> dict[str, Any]:
        """The run as one self-contained HTML file, report.html in the run's folder (`doit report` only)."""
        # no task_dep: the report shows the run as it stands, it never starts a worker
        return {"actions": [lambda: _report(ctx)], "uptodate": [False], **QUIET}

    generators = [task_plan, task_map, task_verify, task_reduce, task_deferred, task_final, task_archive,
                  task_report]
    return {fn.__name__: _exit_on_user_error(fn) for fn in generators}


def _exit_on_user_error(generate: Callable[[], Any]) -> Callable[[], Any]:
    """doit prints a traceback for errors while it loads tasks; a user's mistake gets its one line and exit code."""
    if inspect.isgeneratorfunction(generate):
        def each() -> Iterator[Any]:
            try:
                yield from generate()
            except UserError as exc:
                exit_with(exc)
        wrapper: Callable[[], Any] = each
    else:
        def one() -> Any:
            try:
                return generate()
            except UserError as exc:
                exit_with(exc)
        wrapper = one
    return functools.wraps(generate)(wrapper)


def _plan_current(ctx: RunContext) -> bool:
    """planfile.is_current, skipped when plan.json and the contract are as they were when it last held."""
    files = [ctx.layout.plan_json, ctx.layout.abs(ctx.layout.contract_rel)]
    if ctx.cache is not None and ctx.cache.mark_holds("plan_current", files):
        return True
    current = planfile.is_current(ctx)
    if current and ctx.cache is not None:
        ctx.cache.set_mark("plan_current", files)
    return current


def _summary_inputs(ctx: RunContext) -> list[str]:
    """What reduce_state.json and deferred.json summarise: plan, provenance, attempt logs, every report."""
    layout = ctx.layout
    return [str(layout.plan_json), str(layout.provenance_json), str(ctx.store.journal_path),
            ctx.abs_str(layout.logs_rel), *ctx.report_files_abs]


def _summary_signatures(ctx: RunContext) -> list[Any]:
    paths = _summary_inputs(ctx)
    if not ctx.workers_started and len(ctx.settled_reports) == len(ctx.plan.tasks):
        # no worker ran in this run: every report is as the settled proof saw it when the run loaded
        reports = [ctx.settled_reports[task.id] for task in ctx.plan.tasks]
        return [stat_signature(path)[0] for path in paths[:-len(reports)]] + reports
    return [stat_signature(path)[0] for path in paths]


def _summary_current(ctx: RunContext, name: str, output: Callable[[RunContext], str], inputs: list[Any]) -> bool:
    """A no-op run leaves the inventory as it is: nothing it summarises changed since it was written."""
    if ctx.cache is None:
        return False
    return ctx.cache.mark_is(name, [*inputs, stat_signature(ctx.layout.abs(output(ctx)))[0]])


def _summarise(ctx: RunContext, name: str, write: Callable[[RunContext], Any],
               output: Callable[[RunContext], str]) -> Any:
    failed = _quiet(write, ctx)
    if failed is None and ctx.cache is not None:
        ctx.cache.set_mark(name, _summary_inputs(ctx), outputs=[ctx.layout.abs(output(ctx))])
    return failed


def _final(ctx: RunContext) -> Any:
    """`doit final` says what `rlm final` says: the paths written, or (as a task failure) why it was refused."""
    try:
        result = final.write(ctx)
    except UserError as exc:
        return TaskFailed(str(exc))
    print(final.summary_line(ctx, result), flush=True)
    return None


def _report(ctx: RunContext) -> None:
    path = report_html.write(ctx)
    print(f"report: {report_html.shown_path(ctx, path)}", flush=True)


def _quiet(write: Callable[[RunContext], Any], ctx: RunContext) -> Any:
    """Run a writer as a doit action: user errors become one-line task failures."""
    try:
        write(ctx)
    except UserError as exc:
        return TaskFailed(str(exc))
    return None


def _archive(ctx: RunContext) -> TaskFailed | None:
    """`doit archive`: the run session holds the run lock and releases it when doit ends."""
    try:
        result = archive.create(ctx)
    except UserError as exc:
        return TaskFailed(str(exc))
    sys.stdout.write("".join(f"rlm: {line}\n" for line in result.lines(ctx.plan.run_id)))
    return None


def doit_config(ctx: RunContext) -> dict[str, Any]:
    ctx.layout.doit_db.parent.mkdir(parents=True, exist_ok=True)
    if ctx.layout.doit_db.exists():
        aside = doitdb.set_aside_if_unreadable(ctx.layout.doit_db)
        if aside is not None:
            sys.stderr.write(f"rlm: warning: {DOIT_DB} was not a readable database; "
                             f"set aside as {aside.name} and rebuilt (provenance decides what is fresh)\n")
    return {
        "default_tasks": DEFAULT_TASKS,
        "dep_file": str(ctx.layout.doit_db),
        "backend": "sqlite3",
        "num_process": ctx.plan.budget.max_inflight,
        "par_type": "thread",
        "continue": True,  # one failed worker must not stop independent ones
        "reporter": reporter_class(ctx),
        "outfile": sys.stdout,  # doit's default is the stream at its import time
        "subtasks": True,  # `doit list` shows every task (its --all), each with its goal's first line
        "verbosity": 0,
    }


class WaveOptions(NamedTuple):
    """`rlm run --wave` and its switches; `jobs`: `-n`, the cap in place of budget.max_inflight."""

    allow_join: bool = False
    allow_refill: bool = False
    jobs: int | None = None


def hold_back_for_wave(ctx: RunContext, options: WaveOptions) -> None:
    """`rlm run --wave`: only the safe-first wave runs; every other task that is not done waits.

    The wave is the ready tasks (every dependency done, so no task runs after a dependency that ran in
    the same invocation), at most max_inflight of them with no refill, and no join task: the workflow's
    "run the ready wave, review, then join". Workers a dead orchestrator left are in the wave, first:
    the session ends or adopts them before anything starts.
    """
    states = status.resolve(ctx)
    wave = status.plan_wave(ctx, states, options.jobs, options.allow_join, options.allow_refill)
    ready = {task.id for task in wave.run}
    ctx.held_back = frozenset(task.doit_name for task in ctx.plan.tasks
                              if task.id not in ready and (states[task.id].state not in status.DONE))
    ctx.held_join = frozenset(task.doit_name for task in wave.join)


def doit_namespace(config_path: str | Path = "rlm.yaml", wave: WaveOptions | None = None) -> dict[str, Any]:
    """DOIT_CONFIG and the task_* functions for dodo.py; invalid config → errors on stderr, exit 2."""
    # Loading builds a few hundred thousand long-lived objects (plan, cache, doit's tasks) and no
    # garbage; full collections over them were a third of a no-op run. The run session freezes
    # what loading built and turns collection back on (run.session.RunSession.open).
    command = doit_commands.guard_loading_command()  # a mistyped task name: one line, exit 2 (not doit's 3)
    try:
        worker.kill_grace()  # checked before anything runs, like the config
    except UserError as exc:
        exit_with(exc)
    gc.disable()
    try:
        ctx = load_context(config_path)  # skips validation and rendering when nothing changed
    except ConfigError as exc:
        for line in exc.problems:
            sys.stderr.write(line + "\n")
        raise SystemExit(exc.exit_code) from None
    doit_commands.lock_state_change(lambda: RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours))
    if wave is not None:
        hold_back_for_wave(ctx, wave)
    return {"DOIT_CONFIG": doit_config(ctx), **task_generators(ctx, command)}


class RlmTaskLoader(NamespaceTaskLoader):  # type: ignore[misc]
    """doit's loader for rlm's tasks without a dodo.py (`rlm run`, doit's API): loads them where doit loads
    a dodo.py, inside the command, so the command speaks rlm's exit codes there too (run.doit_commands)."""

    def __init__(self, config_path: str | Path = "rlm.yaml", wave: WaveOptions | None = None) -> None:
        super().__init__()
        self.config_path, self.wave = config_path, wave

    def setup(self, opt_values: dict[str, Any]) -> None:
        self.namespace = doit_namespace(self.config_path, self.wave)
