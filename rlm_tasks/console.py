"""What `doit` prints: one line per task that ran, a summary; never worker output.

A doit reporter is the hook doit gives for a run's start and end, so it also
holds the run lock for exactly the duration of the run.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from doit.exceptions import UnmetDependency

from . import reduce
from .context import RunContext
from .errors import UserError
from .lifecycle import RunLock

WORKER_TASK_PREFIXES = ("map:", "verify:")
EXIT_FAILED = 1
EXIT_ERROR = 2


def _is_worker(name: str) -> bool:
    return name.startswith(WORKER_TASK_PREFIXES)


class RunReporter:
    """doit reporter for rlm runs; `ctx` is bound by `reporter_class`."""

    desc = "rlm run output"
    ctx: RunContext

    def __init__(self, outstream: TextIO, options: dict[str, Any]) -> None:
        self.out = outstream
        self.lock = RunLock(self.ctx.layout)
        self.started = time.time()
        self.counts = {"ran": 0, "failed": 0, "skipped": 0, "fresh": 0}
        self.failures: list[str] = []
        self.errors: list[str] = []
        self._write_lock = threading.Lock()
        self._locked = False

    def write(self, text: str) -> None:
        with self._write_lock:
            self.out.write(text)
            self.out.flush()

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        try:
            self.lock.acquire()
        except UserError as exc:
            sys.stderr.write(f"rlm: {exc}\n")
            raise SystemExit(exc.exit_code) from None
        self._locked = True
        workers = sum(1 for name in tasks if _is_worker(name))
        self.write(f"rlm: run {self.ctx.plan.run_id}: {workers} tasks\n")

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
            detail = f"{values.get('duration', 0):.1f}s  {values.get('report_path', '')}"
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
        """
        if not self._locked:
            return
        try:
            if self.failures and "reduce" in self.failures:
                reduce.write_reduce_state(self.ctx)
                reduce.write_deferred(self.ctx)
        finally:
            self.lock.release()
        elapsed = time.time() - self.started
        c = self.counts
        skipped = f", {c['skipped']} not started" if c["skipped"] else ""
        self.write(f"rlm: {c['ran']} ran, {c['failed']} failed{skipped}, {c['fresh']} fresh in {elapsed:.1f}s; "
                   f"inventory: {reduce.reduce_state_path(self.ctx)}\n")
        if self.failures:
            raise SystemExit(EXIT_FAILED if not self.errors else EXIT_ERROR)


def reporter_class(ctx: RunContext) -> type[RunReporter]:
    return type("RunReporter", (RunReporter,), {"ctx": ctx})
