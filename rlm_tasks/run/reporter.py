"""What `doit` prints: state changes of worker tasks and a summary; never worker output.

On a terminal a live progress line (done/running/failed/total, elapsed, the
longest-running worker) sits below the lines for finished tasks; without one
(CI logs, `rlm run --detach`) every state change is one plain line.

A doit reporter is the hook doit gives for a run's start and end, so it also
holds the run lock, the signal handlers and inflight.json for exactly the
duration of the run.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import threading
import time
from typing import Any, TextIO

from doit.exceptions import UnmetDependency

from rlm_tasks.errors import UserError
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.phases import reduce
from rlm_tasks.run import housekeeping, inflight, progress, signals, worker
from rlm_tasks.state.context import RunContext

WORKER_TASK_PREFIXES = ("map:", "verify:")
EXIT_FAILED = 1
EXIT_ERROR = 2
TICK_SECONDS = 1.0
NAMES_SHOWN = 5


def _is_worker(name: str) -> bool:
    return name.startswith(WORKER_TASK_PREFIXES)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def _worker_closure(tasks: Any, selected: Any) -> int:
    """How many worker tasks this doit invocation may touch: the selected tasks and what they depend on."""
    seen: set[str] = set()
    stack = list(selected or tasks)
    while stack:
        name = stack.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        stack.extend(getattr(tasks[name], "task_dep", ()) or ())
    return sum(1 for name in seen if _is_worker(name))


class RunReporter:
    """doit reporter for rlm runs; `ctx` is bound by `reporter_class`."""

    desc = "rlm run output"
    ctx: RunContext
    adopt = False  # `rlm run --adopt`; RLM_ADOPT=1 does the same for plain `doit`

    def __init__(self, outstream: TextIO, options: dict[str, Any]) -> None:
        self.out = outstream
        self.lock = RunLock(self.ctx.layout, self.ctx.plan.lifecycle.lock_stale_hours)
        self.started = time.time()
        self.counts = {"ran": 0, "failed": 0, "skipped": 0, "fresh": 0}
        self.failures: list[str] = []
        self.errors: list[str] = []
        self.total = 0
        self.running: dict[str, tuple[float, int, str]] = {}  # doit name → (start, attempt, tier)
        self.guard = signals.SignalGuard()
        self.session: inflight.Session | None = None
        self._write_lock = threading.RLock()
        self._locked = False
        isatty = getattr(outstream, "isatty", None)
        self.live = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        self._drawn = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # output
    def write(self, text: str) -> None:
        with self._write_lock:
            if self._drawn:
                self.out.write("\r\x1b[2K")
                self._drawn = False
            self.out.write(text)
            if self.live and self._ticker is not None and not self._stop.is_set():
                self._draw()
            self.out.flush()

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
                                 now - self.started, longest)

    def _draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        self.out.write("rlm: " + progress.line(self.snapshot())[: max(10, width - 6)])
        self._drawn = True

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._write_lock:
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
    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        gc.freeze()  # the loaded plan and tasks live until the end: keep them out of every collection
        gc.enable()  # disabled while loading (tasks.doit_namespace)
        try:
            self.lock.acquire()
        except UserError as exc:
            sys.stderr.write(f"rlm: {exc}\n")
            raise SystemExit(exc.exit_code) from None
        self._locked = True
        housekeeping.on_run_start(self.ctx, self.write)  # uses: markers, TTL cleanup, drift baseline
        worker.reset_shutdown()
        self.guard.install()
        self.total = _worker_closure(tasks, selected_tasks)
        self.write(f"rlm: run {self.ctx.plan.run_id}: {sum(1 for name in tasks if _is_worker(name))} tasks\n")
        adopt = self.adopt or inflight.adopt_requested()
        self.session, recovery = inflight.start(self.ctx, adopt)
        self.session.listeners.append(self.on_event)
        dead = f" (pid {recovery.dead_pid})" if recovery.dead_pid else ""
        if recovery.ended:
            self.write(f"rlm: ended {len(recovery.ended)} worker group(s) a dead orchestrator{dead} left running: "
                       f"{_names([str(e.get('doit_name') or e.get('worker_id')) for e in recovery.ended])}\n")
        if recovery.adopted:
            self.write(f"rlm: adopting {len(recovery.adopted)} worker(s) a dead orchestrator{dead} left running: "
                       f"{_names([str(e.get('doit_name') or e.get('worker_id')) for e in recovery.adopted])}\n")
        if self.live:
            self._ticker = threading.Thread(target=self._tick, name="rlm-progress", daemon=True)
            self._ticker.start()

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        pass

    def skip_uptodate(self, task: Any) -> None:
        if _is_worker(task.name):
            self.counts["fresh"] += 1

    def skip_ignore(self, task: Any) -> None:
        pass

    def add_success(self, task: Any) -> None:
        if _is_worker(task.name):
            self.counts["ran"] += 1
            values = getattr(task, "values", None) or {}
            extra = ""
            if int(values.get("attempts") or 1) > 1:
                extra += f"  attempt {values.get('attempt')}, {values.get('compute_tier')}"
            detail = f"{values.get('duration', 0):.1f}s  {values.get('report_path', '')}{extra}"
            self.write(f"  ok      {task.name}  {detail}\n")

    def add_failure(self, task: Any, fail: Any) -> None:
        self.failures.append(task.name)
        if isinstance(fail, UnmetDependency):
            # doit's way of saying "not started because a dependency failed"
            if _is_worker(task.name):
                self.counts["skipped"] += 1
                self.write(f"  SKIPPED {task.name}: a task it depends on failed\n")
            return
        message = getattr(fail, "message", None) or str(fail)
        first_line = message.strip().splitlines()[0] if message.strip() else "failed"
        if _is_worker(task.name):
            self.counts["failed"] += 1
        self.write(f"  FAILED  {task.name}: {first_line}\n")

    def runtime_error(self, msg: str) -> None:
        self.errors.append(msg)
        self.write(f"rlm: error: {msg.strip()}\n")

    def teardown_task(self, task: Any) -> None:
        pass

    def cleanup_error(self, exception: Any) -> None:
        self.write(f"rlm: cleanup error: {exception}\n")

    def complete_run(self) -> None:
        """Summary, the REDUCE inventory when doit skipped it, and our exit code.

        doit exits 2 when a dependency failed (an "error") and skips `reduce`;
        a run with failed workers should exit 1 and still leave its inventory.
        Interrupted by SIGINT/SIGTERM: every worker group has had the signal;
        wait for them (then SIGKILL), keep what finished, exit 130/143.
        """
        self.guard.unwinding = True
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2 * TICK_SECONDS)
        if not self._locked:
            self.guard.restore()
            return
        try:
            if self.guard.signum is not None:
                worker.drain(worker.KILL_GRACE_SECONDS + 1.0)
            if self.session is not None:
                self.session.finish()
            self.ctx.save_cache()
            if (self.failures and "reduce" in self.failures) or self.guard.signum is not None:
                try:
                    reduce.write_reduce_state(self.ctx)
                    reduce.write_deferred(self.ctx)
                except UserError as exc:  # the exit code below still says what happened to the run
                    self.write(f"rlm: {exc}\n")
        finally:
            self.guard.restore()
            self.lock.release()
        elapsed = time.time() - self.started
        c = self.counts
        skipped = f", {c['skipped']} not started" if c["skipped"] else ""
        summary = (f"{c['ran']} ran, {c['failed']} failed{skipped}, {c['fresh']} fresh in {elapsed:.1f}s; "
                   f"inventory: {reduce.reduce_state_path(self.ctx)}")
        if self.guard.signum is not None:
            self.write(f"rlm: interrupted by {self.guard.name}; "
                       f"signalled {self.guard.signalled} running worker group(s); "
                       f"{summary}\n")
            raise SystemExit(self.guard.exit_code)
        self.write(f"rlm: {summary}\n")
        if self.failures:
            raise SystemExit(EXIT_FAILED if not self.errors else EXIT_ERROR)


def reporter_class(ctx: RunContext) -> type[RunReporter]:
    return type("RunReporter", (RunReporter,), {"ctx": ctx})
