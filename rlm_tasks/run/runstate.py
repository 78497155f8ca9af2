"""One run's state in this process: created per run (tasks.load_run) and passed explicitly, never found in a
module-level registry keyed by a context.

It holds what a run keeps while it goes: the budget's claims, the inflight session, the executor, and the
garbage collector switch that loading turns off. close() hands the caller's process back as it found it:
the executor closed and collection on again if it was on, also after an early return or an error.
"""

from __future__ import annotations

import gc
import threading

from rlm_tasks.run import executors
from rlm_tasks.run.executors.base import Executor
from rlm_tasks.run.failfast import Streak
from rlm_tasks.run.inflight import Recovery, Session
from rlm_tasks.state.budget import Claims
from rlm_tasks.state.context import RunContext


class CollectorSwitch:
    """Loading builds a few hundred thousand long-lived objects (plan, cache, doit's tasks) and no garbage: full
    collections over them were a third of a no-op run. Collection is off while a run loads and back on, what
    loading built frozen out of every collection, once the run starts (run.session) or ends."""

    def __init__(self) -> None:
        self.paused = False

    def pause(self) -> None:
        if gc.isenabled():
            gc.disable()
            self.paused = True

    def resume(self, freeze: bool = True) -> None:
        """Collection on again, if pause() turned it off; `freeze`: keep what loading built out of collections."""
        if self.paused:
            self.paused = False
            if freeze:
                gc.freeze()
            gc.enable()


class Run:
    """What one run keeps in this process; `close()` leaves nothing of it behind."""

    def __init__(self, ctx: RunContext, collector: CollectorSwitch | None = None) -> None:
        self.ctx = ctx
        self.collector = collector or CollectorSwitch()
        self.budget = Claims()
        self.failures = Streak(ctx.plan.budget.stop_after_same_failures)  # same-cause failures in a row
        self.doit_rows: frozenset[str] = frozenset()  # doit's database as the run loaded (run.doitdb.rows)
        self._lock = threading.Lock()
        self._inflight: Session | None = None
        self._executor: Executor | None = None

    @property
    def inflight(self) -> Session:
        """The run's inflight session; a passive one when no run session started it (doit's API, tests)."""
        with self._lock:
            if self._inflight is None:
                self._inflight = Session(self.ctx)
            return self._inflight

    def start_inflight(self, adopt: bool) -> tuple[Session, Recovery]:
        """A new session for a doit run: recover what a dead orchestrator left, then write inflight.json."""
        new = Session(self.ctx)
        with self._lock:
            self._inflight = new
        return new, new.recover(adopt)

    def executor(self) -> Executor:
        """Where this run's attempts run, made at the first call (one Dask client for all of them); ExecutorError
        when RLM_EXECUTOR or the executor block is wrong."""
        with self._lock:
            if self._executor is None:
                self._executor = executors.create(self.ctx)
            return self._executor

    def close_executor(self) -> None:
        with self._lock:
            found, self._executor = self._executor, None
        if found is not None:
            found.close()

    def close(self) -> None:
        """The run is over (or never started): close its executor, turn collection back on. Idempotent."""
        try:
            self.close_executor()
        finally:
            self.collector.resume(freeze=False)
