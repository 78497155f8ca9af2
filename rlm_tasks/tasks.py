"""Plan → doit task dicts. dodo.py hands `doit_namespace()` to doit and nothing else."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from doit.cmd_base import NamespaceTaskLoader

from rlm_tasks.config.records import ConfigError, TaskSpec
from rlm_tasks.errors import UserError, exit_with
from rlm_tasks.layout import DOIT_DB
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.phases import reduce
from rlm_tasks.render import escape
from rlm_tasks.run import actions, doit_commands, doitdb, worker
from rlm_tasks.run.runstate import CollectorSwitch, Run
from rlm_tasks.run.session import reporter_class
from rlm_tasks.state import planfile, status
from rlm_tasks.state import settled as state_settled
from rlm_tasks.state.cache import stat_signature
from rlm_tasks.state.context import RunContext, load_context

# Our actions print nothing. doit's capture swaps sys.stdout/sys.stderr per action,
# and with parallel threads the swaps interleave and leave a dead stream behind.
QUIET: dict[str, Any] = {"verbosity": 0, "io": {"capture": False}}
DEFAULT_TASKS = ["plan", "map", "verify", "reduce", "deferred"]


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


def worker_task(run: Run, task: TaskSpec, settled: bool = False, forgotten: bool = False,
                command: str | None = None) -> dict[str, Any]:
    ctx = run.ctx
    # A settled task gets a plain True: doit then skips it without calling back (and without
    # inspecting a callable's signature), which is most of a no-op run's time per task.
    task_dict = {
        "name": task.id,
        "doc": escape.one_line(task.goal.splitlines()[0], 80) if task.goal.strip() else task.id,  # no escapes
        "actions": [actions.worker_action(run, task)],
        # doit runs a task whose target is missing whatever `uptodate` says; a held-back task has none
        "targets": [] if task.doit_name in ctx.held_back else [ctx.report_abs[task.id]],
        "task_dep": ["plan", *(ctx.task(dep).doit_name for dep in task.depends_on)],
        "uptodate": [True if settled or task.doit_name in ctx.held_back else Fresh(ctx, task, forgotten)],
        **QUIET,
    }
    if command in (None, ONLY_FOR_COMMAND["meta"]):
        task_dict["meta"] = {"rlm": Why(ctx, task, forgotten)}
    if command in (None, ONLY_FOR_COMMAND["clean"]):
        task_dict["clean"] = [actions.clean_action(ctx, task)]
    return task_dict


def task_generators(run: Run, command: str | None = None) -> dict[str, Callable[[], Any]]:
    """The task_* functions doit loads; `command`: the doit command loading them, when known (ONLY_FOR_COMMAND)."""
    ctx = run.ctx
    memo: dict[str, Any] = {}

    def is_forgotten(task: TaskSpec) -> bool:
        if "forgotten" not in memo:
            run.doit_rows = doitdb.rows(ctx.layout.doit_db)  # read once: remember() at the run's end uses it too
            memo["forgotten"] = doitdb.forgotten(run.doit_rows)
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
            "actions": [lambda: actions.quiet(planfile.write_plan, ctx)],  # a refused iteration fails here, in one line
            "uptodate": [lambda: _plan_current(ctx)],
            **QUIET,
        }

    def task_map() -> Iterator[dict[str, Any]]:
        """Run the MAP workers whose reports are missing, invalid or stale."""
        yield {"basename": "map", "name": None, "doc": "all map tasks"}
        for task in ctx.plan.tasks:
            if task.mode == "map":
                yield worker_task(run, task, is_settled(task), is_forgotten(task), command)

    def task_verify() -> Iterator[dict[str, Any]]:
        """Run the VERIFY workers, after the tasks they depend on."""
        yield {"basename": "verify", "name": None, "doc": "all verify tasks"}
        for task in ctx.plan.tasks:
            if task.mode == "verify":
                yield worker_task(run, task, is_settled(task), is_forgotten(task), command)

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
        return {"actions": [lambda: actions.final_action(ctx)], "task_dep": ["reduce", "deferred"],
                "uptodate": [False], **QUIET}

    def task_archive() -> dict[str, Any]:
        """Archive the finished run under .rlm/archive/, trim its logs, TTL cleanup (`doit archive` only)."""
        return {"actions": [lambda: actions.archive_action(ctx)], "task_dep": ["final"], "uptodate": [False], **QUIET}

    def task_report() -> dict[str, Any]:
        """The run as one self-contained HTML file, report.html in the run's folder (`doit report` only)."""
        # no task_dep: the report shows the run as it stands, it never starts a worker
        return {"actions": [lambda: actions.report_action(ctx)], "uptodate": [False], **QUIET}

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


def _summary_signatures(ctx: RunContext) -> list[Any]:
    paths = reduce.summary_inputs(ctx)
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
    failed = actions.quiet(write, ctx)
    if failed is None and ctx.cache is not None:
        ctx.cache.set_mark(name, reduce.summary_inputs(ctx), outputs=[ctx.layout.abs(output(ctx))])
    return failed


def doit_config(run: Run) -> dict[str, Any]:
    ctx = run.ctx
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
        "reporter": reporter_class(run),
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


def load_run(config_path: str | Path = "rlm.yaml", wave: WaveOptions | None = None) -> Run:
    """The run rlm.yaml declares, loaded with the garbage collector off (run.runstate.CollectorSwitch); invalid
    config → errors on stderr, exit 2. Its owner closes it; a failed load leaves nothing behind."""
    try:
        worker.kill_grace()  # checked before anything runs, like the config
    except UserError as exc:
        exit_with(exc)
    collector = CollectorSwitch()
    collector.pause()
    try:
        ctx = load_context(config_path)  # skips validation and rendering when nothing changed
        if wave is not None:
            hold_back_for_wave(ctx, wave)
    except BaseException as exc:
        collector.resume(freeze=False)
        if not isinstance(exc, ConfigError):
            raise
        for line in exc.problems:
            sys.stderr.write(line + "\n")
        raise SystemExit(exc.exit_code) from None
    return Run(ctx, collector)


def run_namespace(run: Run) -> dict[str, Any]:
    """DOIT_CONFIG and the task_* functions of a loaded run; the run is closed if they cannot be built."""
    command = doit_commands.guard_loading_command()  # a mistyped task name: one line, exit 2 (not doit's 3)
    ctx = run.ctx
    try:
        doit_commands.lock_state_change(lambda: RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours))
        return {"DOIT_CONFIG": doit_config(run), **task_generators(run, command)}
    except BaseException:
        run.close()
        raise


def doit_namespace(config_path: str | Path = "rlm.yaml", wave: WaveOptions | None = None) -> dict[str, Any]:
    """DOIT_CONFIG and the task_* functions for dodo.py; invalid config → errors on stderr, exit 2."""
    return run_namespace(load_run(config_path, wave))


class RlmTaskLoader(NamespaceTaskLoader):  # type: ignore[misc]
    """doit's loader for rlm's tasks without a dodo.py (`rlm run`, doit's API): loads them where doit loads
    a dodo.py, inside the command, so the command speaks rlm's exit codes there too (run.doit_commands)."""

    def __init__(self, config_path: str | Path = "rlm.yaml", wave: WaveOptions | None = None) -> None:
        super().__init__()
        self.config_path, self.wave = config_path, wave
        self.run: Run | None = None

    def setup(self, opt_values: dict[str, Any]) -> None:
        self.run = load_run(self.config_path, self.wave)
        self.namespace = run_namespace(self.run)

    def close(self) -> None:
        """doit is done with the tasks (it has no hook for that): nothing of the run stays in this process."""
        if self.run is not None:
            self.run.close()
