"""What `doit` prints: one line per task that ran, a summary; never worker output.

A doit reporter is the hook doit gives for a run's start and end, so it also
holds the run lock for exactly the duration of the run.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from .context import RunContext
from .errors import UserError
from .lifecycle import RunLock

WORKER_TASK_PREFIXES = ("map:", "verify:")


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
        self.counts = {"ran": 0, "failed": 0, "fresh": 0}
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
        message = getattr(fail, "message", None) or str(fail)
        first_line = message.strip().splitlines()[0] if message.strip() else "failed"
        if _is_worker(task.name):
            self.counts["failed"] += 1
        self.failures.append(task.name)
        self.write(f"  FAILED  {task.name}: {first_line}\n")

    def runtime_error(self, msg: str) -> None:
        self.errors.append(msg)
        self.write(f"rlm: error: {msg.strip()}\n")

    def teardown_task(self, task: Any) -> None:
        pass

    def cleanup_error(self, exception: Any) -> None:
        self.write(f"rlm: cleanup error: {exception}\n")

    def complete_run(self) -> None:
        if not self._locked:
            return
        elapsed = time.time() - self.started
        c = self.counts
        self.write(f"rlm: {c['ran']} ran, {c['failed']} failed, {c['fresh']} fresh (skipped) in {elapsed:.1f}s; "
                   f"provenance: {self.ctx.layout.provenance_json.relative_to(self.ctx.plan.root)}\n")
        self.lock.release()


def reporter_class(ctx: RunContext) -> type[RunReporter]:
    return type("RunReporter", (RunReporter,), {"ctx": ctx})
