"""The agents die with whoever started them: a watchdog process per orchestrator (or Dask worker process).

A SIGKILLed process runs no handler, so the process that starts agents also
starts this watchdog once, in a session of its own, and tells it on a pipe
which worker groups (and attempt tags) are live. When the pipe reaches EOF
without a goodbye, whoever held its write end died: the watchdog ends every
group still listed (SIGTERM, a grace period, SIGKILL) and every process
carrying a listed attempt tag, then exits. A worker never holds the write end
(the pipe is close-on-exec), so no agent keeps the watchdog waiting.

Portable where /proc is missing (only the tag sweep needs Linux). The watchdog
process is `watchdog_main.py`, standard library only, run as `python -I`.

Protocol, one line each: `+ PGID TICKS TAG` a group started (TICKS: the
leader's start time, to tell a reused pid), `- PGID` it ended, `bye` a clean
exit (nothing is ended), EOF without `bye`: end everything listed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from rlm_tasks.run import orphans

MAIN = Path(__file__).with_name("watchdog_main.py")
KEEP_ENV = "RLM_KEEP_WORKERS"  # "1": workers outlive a killed orchestrator, for a later `--adopt`
_lock = threading.Lock()
_pipe: IO[bytes] | None = None
_proc: subprocess.Popen[bytes] | None = None


def _send(line: str) -> None:
    global _pipe
    with _lock:
        if _pipe is None:
            return
        try:
            _pipe.write(line.encode() + b"\n")
            _pipe.flush()
        except OSError:  # the watchdog died: nothing to tell
            _pipe = None


def keeping() -> bool:
    """Workers must outlive this process (RLM_KEEP_WORKERS=1, for a later `--adopt`): no watchdog, and their
    output goes straight to its files, not through a pipe to us (unmasked, then)."""
    return os.environ.get(KEEP_ENV) == "1"


def _ensure(grace: float) -> None:
    """Start this process's watchdog, once (again if it died)."""
    global _pipe, _proc
    if keeping():
        return
    with _lock:
        if _proc is not None and _proc.poll() is None and _pipe is not None:
            return
        try:
            # a session of its own: a Ctrl-C or hangup on the terminal is the orchestrator's to handle;
            # through orphans.spawn, so that the orphan sweep never takes it for a worker's orphan
            proc = orphans.spawn([sys.executable, "-I", str(MAIN), f"{grace:g}"], helper=True, stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            return  # no watchdog: the orchestrator still ends its workers in every way it can
        _proc, _pipe = proc, proc.stdin


def watch(pgid: int, ticks: int | None, tag: str, grace: float) -> None:
    """A worker group started here: end it should this process die."""
    _ensure(grace)
    _send(f"+ {pgid} {ticks if ticks is not None else '-'} {tag}")


def unwatch(pgid: int) -> None:
    _send(f"- {pgid}")


def pid() -> int | None:
    """The watchdog's pid, while it runs (tests; the orphan sweep never takes it for an orphan)."""
    with _lock:
        return _proc.pid if _proc is not None and _proc.poll() is None else None


def goodbye() -> None:
    """A clean exit: the watchdog leaves (the process ended its own workers)."""
    global _pipe, _proc
    _send("bye")
    with _lock:
        if _pipe is not None:
            with contextlib.suppress(OSError):
                _pipe.close()
        _pipe = None
        if _proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                _proc.wait(timeout=5)
        _proc = None
