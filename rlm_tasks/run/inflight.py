"""Writing inflight.json (machine-local): the attempts running now, so a dead orchestrator's workers can be found.

The run session rewrites it atomically whenever an attempt starts or ends. The next `doit`
on the run reads what a dead orchestrator left: a worker group still alive is
ended (the default) or adopted (`rlm run --adopt`, or RLM_ADOPT=1): its task
waits for it and accepts its report if it validates against the digests taken
before that worker started. Tasks without fresh provenance run again; finished
tasks never do.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from rlm_tasks import jsonio
from rlm_tasks.clock import iso
from rlm_tasks.config.records import TaskSpec, Tier
from rlm_tasks.errors import UserError
from rlm_tasks.lifecycle.runlock import LOCKED_EXIT_CODE
from rlm_tasks.procs import hostname, start_ticks
from rlm_tasks.run import executors, worker
from rlm_tasks.state.budget import attempts_by_task
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.inflight import entry_alive, is_remote, orchestrator_alive, read

FORMAT_VERSION = 1
FLUSH_DELAY = 0.05  # an ended attempt's entry stays in inflight.json at most about this long
ADOPT_ENV = "RLM_ADOPT"


class Event(NamedTuple):
    kind: str  # start | end | retry | adopt
    doit_name: str
    attempt: int
    tier: str
    message: str = ""
    wait: float = 0.0


class OrchestratorAlive(UserError):
    """inflight.json names a live orchestrator other than this one: its workers are never ended or adopted."""

    exit_code = LOCKED_EXIT_CODE


class Recovery:
    """What a run's start found of the previous orchestrator's attempts. A plain class, as Totals (state/usage.py)."""

    def __init__(self) -> None:
        self.ended: list[dict[str, Any]] = []
        self.adopted: list[dict[str, Any]] = []
        self.dead_pid: int | None = None


class Session:
    """One orchestrator's bookkeeping for its run: inflight.json, attempt numbers, adoption, event listeners."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.path = ctx.layout.abs(ctx.layout.inflight_rel)
        self._lock = threading.Lock()  # the entries (held for dict operations only)
        self._write_lock = threading.Lock()  # inflight.json
        self._changes = 0  # changes made to the entries
        self._written = 0  # how many of them inflight.json holds
        self._flusher: threading.Thread | None = None  # writes what attempts that ended left (attempt_ended)
        self._wake = threading.Event()
        self.entries: dict[str, dict[str, Any]] = {}
        now = time.time()
        self.orchestrator: dict[str, Any] = {
            "pid": os.getpid(), "host": hostname(), "started_at": iso(now), "started": now,
            "pid_start_ticks": start_ticks(os.getpid()),
        }
        self.adoptable: dict[str, dict[str, Any]] = {}
        self.ended: dict[str, dict[str, Any]] = {}
        self.listeners: list[Callable[[Event], None]] = []
        self._attempts: dict[str, int] | None = None
        self._finished = False

    # inflight.json
    def write(self, finished: bool = False) -> None:
        with self._lock:
            self._finished = self._finished or finished  # a worker thread ending late must not unfinish the run
            change = self._change()
        self._flush(change)

    def _change(self) -> int:
        """Count a change of the entries (called with the lock held); `_flush` it once the lock is released."""
        self._changes += 1
        return self._changes

    def _flush(self, change: int) -> None:
        """Return once inflight.json holds `change`: one write covers every change made before it started,
        so attempts starting and ending together share a write, and the entries' lock is never held
        while the file is written."""
        with self._write_lock:
            if self._written >= change:
                return
            with self._lock:
                upto = self._changes
                orchestrator = dict(self.orchestrator)
                if self._finished:
                    orchestrator["finished_at"] = iso(time.time())
                data = {
                    "version": FORMAT_VERSION,
                    "run_id": self.ctx.plan.run_id,
                    "orchestrator": orchestrator,
                    "entries": [self.entries[k] for k in sorted(self.entries)],
                }
            # Atomic but not fsynced: it only matters while this machine runs (after a power loss no
            # worker survives), and eight workers finishing at once would queue behind eight fsyncs.
            # One line from the C encoder: machine-local, never reviewed, rewritten at every start.
            text = json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
            jsonio.write_bytes_atomic(self.path, text.encode("utf-8"), durable=False)
            self._written = upto

    def recover(self, adopt: bool) -> Recovery:
        """Deal with what a dead orchestrator left running; called with the run lock held.

        OrchestratorAlive, ending and adopting nothing, when the orchestrator recorded is alive after all: the
        lock can only have been got because a worker removed its files (where no host lock exists)."""
        previous = read(self.ctx.layout)
        pid = (previous.get("orchestrator") or {}).get("pid")
        if pid != os.getpid() and orchestrator_alive(previous):
            raise OrchestratorAlive(
                f"run '{self.ctx.plan.run_id}' is run by a live orchestrator (pid {pid}, recorded in "
                f"{self.ctx.layout.inflight_rel}); its workers are its own, none was ended and nothing ran")
        recovery = Recovery()
        left = previous.get("entries") or []
        if left and not previous.get("orchestrator", {}).get("finished_at"):
            recovery.dead_pid = previous.get("orchestrator", {}).get("pid")
        known = {t.id for t in self.ctx.plan.tasks}
        to_end: list[int] = []
        left = [entry for entry in left if isinstance(entry, dict)] if isinstance(left, list) else []
        remote = [entry for entry in left if is_remote(entry)]
        for entry in remote:  # never adopted: its Dask task ends with the orchestrator that waited for it
            if entry.get("worker_id") in known:
                self.ended[entry["worker_id"]] = entry
        recovery.ended.extend(executors.end_remote(remote))
        for entry in left:
            if is_remote(entry):
                continue
            alive = entry_alive(entry)
            if entry.get("worker_id") not in known:
                if alive:
                    to_end.append(int(entry["pgid"]))  # a task no longer in the plan: nobody will wait for it
            elif adopt:
                self.adoptable[entry["worker_id"]] = entry
                if alive:
                    self.entries[entry["worker_id"]] = {**entry, "adopted": True}
                    recovery.adopted.append(entry)
            else:
                if alive:
                    to_end.append(int(entry["pgid"]))
                    recovery.ended.append(entry)
                self.ended[entry["worker_id"]] = entry
        if to_end:
            worker.end_groups(to_end)
        self.write()
        return recovery

    def take_adoptable(self, worker_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self.adoptable.pop(worker_id, None)

    # attempts
    def next_attempt(self, task: TaskSpec) -> int:
        """Attempt numbers never repeat within a run directory: logs and provenance both count."""
        with self._lock:
            if self._attempts is None:
                self._attempts = attempts_by_task(self.ctx, logs=True)
            entry = self.ctx.store.get(task.id) or {}
            left = self.adoptable.get(task.id) or self.ended.get(task.id) or {}
            number = max(self._attempts.get(task.id, 0), int(entry.get("attempt") or 0),
                         int(left.get("attempt") or 0)) + 1
            self._attempts[task.id] = number
            return number

    def attempt_started(self, task: TaskSpec, attempt: int, tier: Tier, pid: int, started: float,
                        digests: dict[str, Any], log_rel: str, where: dict[str, Any] | None = None) -> None:
        """`where`: host, pid and cancel Event of an attempt an executor runs on another machine."""
        entry = {
            "worker_id": task.worker_id, "doit_name": task.doit_name, "attempt": attempt,
            "pid": pid, "pgid": pid, "pid_start_ticks": start_ticks(pid),
            "started_at": iso(started), "started": started,
            "compute_tier": tier.name, "model": tier.model, "effort": tier.effort,
            "log_path": log_rel, "report_path": task.report_path, "digests": digests,
            **(where or {}),
        }
        with self._lock:
            self.entries[task.worker_id] = entry
            change = self._change()
        self._flush(change)
        self.emit(Event("start", task.doit_name, attempt, tier.name))

    def attempt_ended(self, task: TaskSpec, attempt: int, tier: str) -> None:
        """The entry leaves inflight.json within FLUSH_DELAY, in one write with the other attempts that ended
        meanwhile (or with the next start), and the attempt does not wait for it: until then readers see an
        entry whose process group is gone, which every reader takes as ended. A remote attempt's is written
        at once (only its Dask worker could tell that it ended)."""
        with self._lock:
            entry = self.entries.pop(task.worker_id, None)
            change = self._change() if entry is not None else 0
        if entry is not None and is_remote(entry):
            self._flush(change)
        elif entry is not None:
            self._flush_soon()
        self.emit(Event("end", task.doit_name, attempt, tier))

    def _flush_soon(self) -> None:
        with self._lock:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_later, daemon=True, name="rlm-inflight")
                self._flusher.start()
        self._wake.set()

    def _flush_later(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(FLUSH_DELAY)  # what else ends meanwhile shares the write
            self._wake.clear()
            if self._finished:  # `finish` wrote the last state; a later run may own the file by now
                return
            self._flush(self._changes)

    def finish(self) -> None:
        with self._lock:
            entries = dict(self.entries)
        alive = {k for k, v in entries.items() if entry_alive(v)}  # /proc reads: not under the lock
        with self._lock:
            self.entries = {k: v for k, v in self.entries.items() if k in alive}
            self._finished = True
            change = self._change()
        self._flush(change)
        self._wake.set()  # the flusher sees the run finished and ends

    def emit(self, event: Event) -> None:
        for listener in list(self.listeners):
            listener(event)


def adopt_requested() -> bool:
    return os.environ.get(ADOPT_ENV, "").strip().lower() in ("1", "true", "yes")
