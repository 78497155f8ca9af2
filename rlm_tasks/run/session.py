"""A run session: everything that holds from the start of one `doit` run on a run to its end.

Opening it freezes what loading built out of the GC, takes the run lock, tidies
`.rlm/` (housekeeping), installs the signal handlers and starts inflight.json
(ending or adopting the workers a dead orchestrator left). Closing it waits for
interrupted workers, finishes inflight.json, saves the cache, writes the REDUCE
inventory when doit skipped `reduce` (a worker failed) or the run was
interrupted, and releases the lock.

doit's only hooks for a run's start and end are its reporter's `initialize`
and `complete_run`; `SessionReporter` opens and closes the session there and
leaves every line of output to `RunReporter`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from doit.exceptions import UnmetDependency
from doit.globals import Globals
from doit.task import Task

from rlm_tasks import gitcmd
from rlm_tasks.errors import UserError, exit_with
from rlm_tasks.layout import DOIT_DB
from rlm_tasks.lifecycle import reopen as reopen_run
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.phases import reduce
from rlm_tasks.run import doitdb, executors, failfast, housekeeping, inflight, schedule, signals, worker
from rlm_tasks.run.isolation import merge
from rlm_tasks.run.reporter import RunReporter, is_worker
from rlm_tasks.run.runstate import Run
from rlm_tasks.state import events, history
from rlm_tasks.state.cache import stat_signature

EXIT_FAILED = 1  # a task failed (doit's own code would be 2 when a dependency failed)
EXIT_ERROR = 2  # a task failed and doit reported an error


class RunSession:
    def __init__(self, run: Run, write: Callable[[str], None]) -> None:
        self.run = run
        self.ctx = ctx = run.ctx
        self.write = write
        self.lock = RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours)
        self.guard = signals.SignalGuard()
        self.inflight: inflight.Session | None = None
        self.opened = False
        self.fresh: list[str] = []  # worker tasks up to date or finished in this run (doitdb.remember)
        self.head_moved: str | None = None  # why this run's committed state was not written (HEAD moved)

    def open(self, adopt: bool, on_event: Callable[[inflight.Event], None], reopen: bool = False,
             selected: Sequence[str] | None = None) -> inflight.Recovery:
        """Take the lock (or exit 3 with one line), tidy up, catch signals; what a dead orchestrator left.

        `on_event` hears every attempt's start, end, retry and adoption. An archived run is refused unless
        `reopen` (or only `selected` final/archive run).
        """
        self.run.collector.resume()  # off while loading; what loading built lives until the end: frozen
        try:
            self.run.executor()  # a wrong RLM_EXECUTOR or executor block stops the run before it starts
            self.lock.acquire()
        except UserError as exc:
            exit_with(exc)
        try:
            reopened = reopen_run.refuse_or_reopen(self.ctx, reopen, selected)
        except UserError as exc:
            self.lock.release()
            exit_with(exc)
        if reopened:
            self.write(reopened + "\n")
        self.opened = True
        doitdb.survive_removal(getattr(Globals.dep_manager, "backend", None), DOIT_DB, self.write)
        housekeeping.on_run_start(self.ctx, self.write)  # uses: markers, TTL cleanup, drift baseline
        if merge.pending(self.ctx.plan.root):  # a run killed mid-merge: the tree gets the whole patch now
            merge.recover(self.ctx.plan.root)
            self.write(f"rlm: finished a merge a killed run left ({merge.JOURNAL})")
        worker.reset_shutdown()
        self.guard.install()
        try:
            self.inflight, recovery = self.run.start_inflight(adopt)
        except UserError as exc:  # another orchestrator runs this run after all: hands off, exit 3
            self.opened = False
            self.guard.restore()
            self.lock.release()
            exit_with(exc)
        self.ctx.store.compact()  # a killed run's provenance journal becomes part of provenance.json
        # `git checkout` during the run: what this run remembers belongs to the old branch, never the new one
        self.ctx.store.guard = gitcmd.HeadWatch(self.ctx.plan.root).moved
        self.inflight.listeners.append(on_event)
        events.emit(self.ctx.layout, events.Kind.RUN_START, tasks=len(self.ctx.plan.tasks))
        return recovery

    def unwind(self) -> None:
        """The run is ending: a signal from now on is forwarded to workers but interrupts nothing here."""
        self.guard.unwinding = True

    @property
    def interrupted(self) -> bool:
        return self.guard.signum is not None

    def mark_not_started(self, names: Sequence[str]) -> None:
        """Tasks the signal stopped before their next attempt began are `interrupted` too, not missing or stale."""
        by_name = {task.doit_name: task for task in self.ctx.plan.tasks}
        for name in names:
            task = by_name.get(name)
            if task is None or self.ctx.freshness(task).fresh:
                continue
            last = history.last(self.ctx.layout, task.worker_id)
            if last is not None and last.get("outcome") in (history.INTERRUPTED, history.RUNNING):
                continue  # the attempt the signal cut short says so already, with its log
            history.mark_not_started(self.ctx.layout, self.ctx.plan.run_id, task.worker_id, self.guard.name)

    def close(self, reduce_skipped: bool, unfinished: Sequence[str] = (), failed: int = 0) -> None:
        if not self.opened:
            self.guard.restore()
            self.run.close()
            return
        try:
            if self.interrupted:
                worker.drain(worker.kill_grace_or_default() + 1.0)
            self.run.close_executor()  # remote attempts end (and say so) before inflight.json records what is left
            if self.inflight is not None:
                self.inflight.finish()
            self.ctx.store.compact()  # the committed form: one provenance.json, no journal
            self.head_moved = self.ctx.store.refused
            if self.head_moved:
                self.write(f"rlm: {self.head_moved}: this run's provenance and inventory were not written on the "
                           "new branch; switch back and run again\n")
            self.ctx.save_cache()
            try:
                doitdb.remember(self.ctx.layout.doit_db, self.fresh, self.run.doit_rows)
            except sqlite3.Error as exc:  # doit's database is a cache: the run's outcome stands
                self.write(f"rlm: could not update {self.ctx.layout.doit_db.name}: {exc}\n")
            if self.interrupted:
                self.mark_not_started(unfinished)
            if (reduce_skipped or self.interrupted) and not self.head_moved:
                try:
                    reduce.write_inventory(self.ctx)
                    reduce.write_deferred(self.ctx)
                except UserError as exc:  # the exit code still says what happened to the run
                    self.write(f"rlm: {exc}\n")
            events.emit(self.ctx.layout, events.Kind.RUN_END, failed=failed,
                        interrupted_by=self.guard.name if self.interrupted else None)
        finally:
            self.guard.restore()
            self.lock.release()
            self.run.close()

    def closing_check(self) -> list[str]:
        """Reports that were fresh or written in this run and were deleted or changed before it ended (another
        worker can write anywhere in the repository): one line each. Unchanged files cost a stat (the cache)."""
        if not self.ctx.workers_started:
            return []  # no worker ran, so none could have touched a report; an edit by hand is seen next run
        found = []
        for name in sorted(set(self.fresh)):
            task = self.ctx.task(name.split(":", 1)[1])
            seen = self.ctx.settled_reports.get(task.id)
            if seen is not None and stat_signature(self.ctx.abs_str(task.report_path))[0] == seen:
                continue  # as it was when provenance last vouched for it (state.settled): one stat
            entry = self.ctx.store.get(task.id)
            if entry is None:
                continue
            if not os.path.lexists(self.ctx.report_file(task)):
                found.append(f"{name} deleted {task.report_path}")
            elif self.ctx.file_sha(task.report_path) != entry.get("report_sha256"):
                found.append(f"{name} changed {task.report_path}")
        return found

    def exit_code(self, failed: bool, errors: bool) -> int | None:
        """130/143 when interrupted; 1 when a task failed (2 if doit also reported an error); None: doit's own."""
        if self.interrupted:
            return self.guard.exit_code
        if failed:
            return EXIT_FAILED if not errors else EXIT_ERROR
        return None


class SessionReporter(RunReporter):
    """The doit reporter of an rlm run: the session around the run, RunReporter's output inside it."""

    run: Run  # bound by reporter_class, with RunReporter's ctx (run.ctx)

    adopt = False  # `rlm run --adopt`; RLM_ADOPT=1 does the same for plain `doit`

    def __init__(self, outstream: TextIO, options: dict[str, Any]) -> None:
        super().__init__(outstream, options)
        self.run_session = RunSession(self.run, self.write)
        self.settled: set[str] = set()  # worker tasks done, or failed for good before any signal
        self.workers_failed = 0  # the event log's run_end: tasks whose own attempts failed (not their dependents)

    def initialize(self, tasks: Mapping[str, Task], selected_tasks: Sequence[str] | None) -> None:
        recovery = self.run_session.open(self.adopt or inflight.adopt_requested(), self.on_event,
                                         reopen_run.reopen_requested(), selected_tasks)
        if self.run_session.opened:
            schedule.install(self.ctx)  # critical path first: doit's dispatcher takes ready tasks by rank
        super().initialize(tasks, selected_tasks)
        self.recovered(recovery)
        self.check_agents()
        self.start_progress()

    def stopped_by(self) -> str | None:
        return self.run.failures.stopped

    def check_agents(self) -> None:
        """Each agent the run may start is checked once, before any worker: one line and exit 2 if one is missing
        or does not run. Agents of a remote executor run on other machines: those are not checked here."""
        names = [name for name in self.closure if name not in self.ctx.held_back]
        pending = [self.ctx.task(name.split(":", 1)[1]) for name in names
                   if name.split(":", 1)[1] not in self.ctx.settled_partial]
        if not pending or executors.choose(self.ctx.plan)[0] != "local":
            return
        try:
            failfast.check_agents(self.ctx, pending)
        except UserError as exc:
            self.run_session.close(reduce_skipped=False)
            exit_with(exc)

    def on_event(self, event: inflight.Event) -> None:
        if event.kind in ("start", "adopt"):
            self.ctx.workers_started = True  # the closing check and the inventory's check look again
        super().on_event(event)

    def skip_uptodate(self, task: Any) -> None:
        self.settled.add(task.name)
        if is_worker(task.name):
            self.run_session.fresh.append(task.name)
        super().skip_uptodate(task)

    def add_failure(self, task: Any, fail: Any) -> None:
        if not isinstance(fail, UnmetDependency):
            self.workers_failed += is_worker(task.name)
            if not self.run_session.interrupted:
                self.settled.add(task.name)
        super().add_failure(task, fail)

    def add_success(self, task: Any) -> None:
        self.settled.add(task.name)
        if is_worker(task.name):
            self.run_session.fresh.append(task.name)
        super().add_success(task)

    def complete_run(self) -> None:
        self.run_session.unwind()
        self.stop_progress()
        if not self.run_session.opened:  # the lock was not ours: nothing ran, nothing to summarise
            self.run_session.close(reduce_skipped=False)
            return
        self.run_session.close(reduce_skipped="reduce" in self.failures,
                               unfinished=[name for name in self.closure if name not in self.settled],
                               failed=self.workers_failed)
        guard = self.run_session.guard
        changed = [] if self.run_session.interrupted else self.run_session.closing_check()
        self.summary(guard.name if self.run_session.interrupted else None, guard.signalled)
        code = self.run_session.exit_code(bool(self.failures), bool(self.errors) or self.config_error)
        if self.run_session.head_moved:
            code = code or EXIT_FAILED
        if changed:
            self.write(f"rlm: closing check: {len(changed)} report(s) deleted or changed during the run, not fresh: "
                       f"{'; '.join(changed)}\n")
            code = code or EXIT_FAILED
        if code is not None:
            raise SystemExit(code)


def reporter_class(run: Run) -> type[SessionReporter]:
    """doit takes a reporter class: this one bound to the run."""
    return type("RunReporter", (SessionReporter,), {"run": run, "ctx": run.ctx})
