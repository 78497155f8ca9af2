"""What `doit` prints: state changes of worker tasks and a summary; never worker output.

On a terminal a live progress line (done/running/failed/total, elapsed, the
longest-running worker) sits below the lines for finished tasks; without one
(CI logs, `rlm run --detach`) every state change is one plain line.

It only reports, as doit's reporters do: the lock, the signal handlers and
inflight.json belong to the run session (run/session.py) around it.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from doit.exceptions import BaseFail, TaskFailed, UnmetDependency
from doit.task import Task

from rlm_tasks.fs import discard_output
from rlm_tasks.phases import reduce
from rlm_tasks.run import inflight
from rlm_tasks.state import progress, reports
from rlm_tasks.state.context import RunContext

WORKER_TASK_PREFIXES = ("map:", "verify:")
TICK_SECONDS = 1.0
NAMES_SHOWN = 5


class BudgetStop(TaskFailed):  # type: ignore[misc]
    """A worker task that could not start (again) because a budget is used up: the run's end, not a failure."""


class FailFastStop(TaskFailed):  # type: ignore[misc]
    """A worker task not started because attempts in a row failed with one cause: said once, then counted."""


class ConfigFailure(TaskFailed):  # type: ignore[misc]
    """A task refused by a mistake in rlm.yaml (e.g. `doit final` with missing evidence): the run exits 2, as `rlm`."""


class Interrupted(TaskFailed):  # type: ignore[misc]
    """A worker task a signal stopped: not done, but not a failure of the task either."""


def is_worker(name: str) -> bool:
    return name.startswith(WORKER_TASK_PREFIXES)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def _worker_closure(tasks: Mapping[str, Task], selected: Sequence[str] | None) -> list[str]:
    """The worker tasks this doit invocation may touch: the selected tasks and what they depend on."""
    if selected is None or {"map", "verify"} <= set(selected):  # the default run: all of them, no walk
        return [name for name in tasks if is_worker(name)]
    seen: set[str] = set()
    stack = list(selected or tasks)
    while stack:
        name = stack.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        stack.extend(getattr(tasks[name], "task_dep", ()) or ())
    return sorted(name for name in seen if is_worker(name))


class RunReporter:
    """doit reporter for rlm runs; `ctx` is bound by `session.reporter_class`."""

    desc = "rlm run output"
    ctx: RunContext

    def __init__(self, outstream: TextIO, options: dict[str, Any]) -> None:
        self.out = outstream
        self.started = time.time()
        self.counts = {"ran": 0, "failed": 0, "skipped": 0, "fresh": 0, "waiting": 0, "partial": 0,
                       "budget": 0, "interrupted": 0, "stopped": 0}
        self.failures: list[str] = []
        self.config_error = False  # a task failed on a mistake in rlm.yaml: exit 2, as `rlm` does
        self.errors: list[str] = []
        self.budget_exhausted: str | None = None  # the first budget refusal: the run ends with it
        self.total = 0
        self.closure: list[str] = []  # worker tasks this run may touch
        self.running: dict[str, tuple[float, int, str]] = {}  # doit name → (start, attempt, tier)
        self._write_lock = threading.RLock()
        isatty = getattr(outstream, "isatty", None)
        self.live = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        self._drawn = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # output
    def write(self, text: str) -> None:
        with self._write_lock:
            self._unless_gone(self._put, text)

    def _put(self, text: str) -> None:
        if self._drawn:
            self.out.write("\r\x1b[2K")
            self._drawn = False
        self.out.write(text)
        if self.live and self._ticker is not None and not self._stop.is_set():
            self._draw()
        self.out.flush()

    def _unless_gone(self, put: Callable[..., None], *args: Any) -> None:
        try:
            put(*args)
        except OSError:  # a closed pipe (`doit | head`) or a terminal gone: the run goes on without output
            self.live = False
            discard_output(self.out)

    def snapshot(self) -> progress.Snapshot:
        now = time.time()
        with self._write_lock:
            running = dict(self.running)
        longest = None
        if running:
            name, (start, _, _) = min(running.items(), key=lambda item: item[1][0])
            longest = (name, now - start)
        c = self.counts
        return progress.Snapshot(self.total, c["ran"] + c["fresh"], len(running), c["failed"] + c["skipped"],
                                 now - self.started, longest, partial=c["partial"])

    def _draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        self.out.write("rlm: " + progress.line(self.snapshot())[: max(10, width - 6)])
        self._drawn = True

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._write_lock:
                if self.live:
                    self._unless_gone(self._redraw)

    def _redraw(self) -> None:
        if self._drawn:
            self.out.write("\r\x1b[2K")
        self._draw()
        self.out.flush()

    def on_event(self, event: inflight.Event) -> None:
        """Attempt-level state changes, from the worker threads."""
        with self._write_lock:
            if event.kind in ("start", "adopt"):
                self.running[event.doit_name] = (time.time(), event.attempt, event.tier)
            elif event.kind == "end":
                self.running.pop(event.doit_name, None)
        if event.kind == "start" and not self.live:
            self.write(f"  start   {event.doit_name}  attempt {event.attempt}, {event.tier}\n")
        elif event.kind == "adopt":
            self.write(f"  adopt   {event.doit_name}  attempt {event.attempt} left running by a dead orchestrator\n")
        elif event.kind == "retry":
            self.write(f"  retry   {event.doit_name}: {event.message}; attempt {event.attempt} "
                       f"({event.tier}) in {event.wait:.1f}s\n")

    # doit reporter interface
    def initialize(self, tasks: Mapping[str, Task], selected_tasks: Sequence[str] | None) -> None:
        self.closure = _worker_closure(tasks, selected_tasks)
        self.total = len(self.closure)
        self.write(f"rlm: run {self.ctx.plan.run_id}: {sum(1 for name in tasks if is_worker(name))} tasks\n")

    def recovered(self, recovery: inflight.Recovery) -> None:
        """What the session did with the workers a dead orchestrator left running."""
        dead = f" (pid {recovery.dead_pid})" if recovery.dead_pid else ""
        if recovery.ended:
            self.write(f"rlm: ended {len(recovery.ended)} worker group(s) a dead orchestrator{dead} left running: "
                       f"{_names([str(e.get('doit_name') or e.get('worker_id')) for e in recovery.ended])}\n")
        if recovery.adopted:
            self.write(f"rlm: adopting {len(recovery.adopted)} worker(s) a dead orchestrator{dead} left running: "
                       f"{_names([str(e.get('doit_name') or e.get('worker_id')) for e in recovery.adopted])}\n")

    def start_progress(self) -> None:
        if self.live:
            self._ticker = threading.Thread(target=self._tick, name="rlm-progress", daemon=True)
            self._ticker.start()

    def stop_progress(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2 * TICK_SECONDS)

    def get_status(self, task: Task) -> None:
        pass

    def execute_task(self, task: Task) -> None:
        pass

    def skip_uptodate(self, task: Task) -> None:
        if task.name in self.ctx.held_back:
            self.counts["waiting"] += 1  # `--wave`: not fresh, only not this wave's
        elif is_worker(task.name):
            self.counts["fresh"] += 1
            if self.ctx.is_partial(self.ctx.task(task.name.split(":", 1)[1])):
                self.counts["partial"] += 1

    def skip_ignore(self, task: Task) -> None:
        pass

    def add_success(self, task: Task) -> None:
        if is_worker(task.name):
            self.counts["ran"] += 1
            values = getattr(task, "values", None) or {}
            extra = ""
            if int(values.get("attempts") or 1) > 1:
                extra += f"  attempt {values.get('attempt')}, {values.get('compute_tier')}"
            detail = f"{values.get('duration', 0):.1f}s  {values.get('report_path', '')}{extra}"
            if values.get("partial"):  # the worker self-terminated: done, not rerun, but not the whole task
                self.counts["partial"] += 1
                self.write(f"  partial {task.name}  {detail}  (next worker plan: "
                           f"{values.get('report_path', '')}{reports.NEXT_PLAN_ANCHOR})\n")
            else:
                self.write(f"  ok      {task.name}  {detail}\n")

    def add_failure(self, task: Task, fail: BaseFail) -> None:
        self.failures.append(task.name)
        if isinstance(fail, UnmetDependency):
            # doit's way of saying "not started because a dependency failed"
            if is_worker(task.name):
                self.counts["skipped"] += 1
                self.write(f"  SKIPPED {task.name}: a task it depends on failed\n")
            return
        message = getattr(fail, "message", None) or str(fail)
        first_line = message.strip().splitlines()[0] if message.strip() else "failed"
        if isinstance(fail, ConfigFailure):
            self.config_error = True
        if isinstance(fail, FailFastStop):
            self.counts["stopped"] += 1
            if self.counts["stopped"] == 1:  # said once; the summary counts the others
                self.write(f"  STOPPED {task.name}: {first_line}\n")
            return
        if isinstance(fail, Interrupted):
            self.counts["interrupted"] += 1
            self.write(f"  INTERRUPTED {task.name}: {first_line}\n")
            return
        if isinstance(fail, BudgetStop):
            self.counts["budget"] += 1
            self.budget_exhausted = self.budget_exhausted or first_line.split("; ")[0]
            self.write(f"  STOPPED {task.name}: {first_line}\n")
            return
        if is_worker(task.name):
            self.counts["failed"] += 1
        self.write(f"  FAILED  {task.name}: {first_line}\n")

    def stopped_by(self) -> str | None:
        """Why no attempt starts any more (run/failfast.py), when the run knows; the session's reporter does."""
        return None

    def runtime_error(self, msg: str) -> None:
        self.errors.append(msg)
        self.write(f"rlm: error: {msg.strip()}\n")

    def teardown_task(self, task: Task) -> None:
        pass

    def cleanup_error(self, exception: BaseException) -> None:
        self.write(f"rlm: cleanup error: {exception}\n")

    def complete_run(self) -> None:
        self.stop_progress()
        self.summary(None, 0)

    def summary(self, interrupted_by: str | None, signalled: int) -> None:
        """The last line: counts, time and where the inventory is; or what interrupted the run."""
        elapsed = time.time() - self.started
        c = self.counts
        skipped = f", {c['skipped']} not started" if c["skipped"] else ""
        skipped += f", {c['budget']} stopped by the budget" if c["budget"] else ""
        skipped += f", {c['interrupted']} interrupted" if c["interrupted"] else ""
        skipped += f", {c['stopped']} not started (stopped)" if c["stopped"] else ""
        waiting = f", {c['waiting']} wait for the next wave (rlm status)" if c["waiting"] else ""
        if self.ctx.held_join:
            joins = len(self.ctx.held_join)
            waiting += f", {joins} join task{'s' if joins != 1 else ''} ready for `rlm run --wave --allow-join`"
        summary = (f"{c['ran']} ran, {c['failed']} failed{skipped}, {c['fresh']} fresh{waiting} in {elapsed:.1f}s; "
                   f"inventory: {reduce.reduce_state_path(self.ctx)}")
        if interrupted_by is not None:
            self.write(f"rlm: interrupted by {interrupted_by}; signalled {signalled} running worker group(s); "
                       f"{summary}\n")
        elif self.stopped_by() is not None:
            why = (self.stopped_by() or "").split(" (last: ")[0]
            self.write(f"rlm: {why}; {summary}\n")
        elif self.budget_exhausted is not None:
            self.write(f"rlm: {self.budget_exhausted}: the run ends here (`rlm final` records it next to the "
                       f"decision); {summary}\n")
        else:
            self.write(f"rlm: {summary}\n")
