"""SIGINT, SIGTERM and SIGHUP during a run: forward to every worker's process group, unwind doit, exit
130/143/129.

SIGHUP (a closed terminal, a dropped ssh session) is handled like SIGTERM, and the workers get SIGTERM: an
agent that ignores a hangup (nohup-style) must not run on with nobody to read its report.

Workers run in their own sessions, so a Ctrl-C on the terminal reaches only the
orchestrator; it forwards the signal. Raising KeyboardInterrupt in the main
thread makes doit stop dispatching and still run its `finish()` (database
saved, the run session closed) -- with SIGTERM's default action doit
would die on the spot. A second signal kills every worker group at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from rlm_tasks.run import worker

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# what signal.signal() returns: a function, SIG_DFL/SIG_IGN, or None (set outside Python)
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class SignalGuard:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.unwinding = False  # the run is ending (RunSession.unwind): nothing left to interrupt
        self.signalled = 0  # worker groups the first signal was forwarded to
        self._previous: dict[int, Handler] = {}

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # only the main thread may set handlers; doit then keeps its defaults
        for sig in FORWARDED:
            self._previous[sig] = signal.signal(sig, self._handle)
        return True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            worker.terminate_all(signal.SIGKILL)  # asked twice: no more grace
            return
        self.signum = signum
        self.signalled = worker.begin_shutdown(signal.SIGTERM if signum == signal.SIGHUP else signum)
        if not self.unwinding:
            raise KeyboardInterrupt

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""
