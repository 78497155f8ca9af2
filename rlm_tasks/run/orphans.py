"""Linux: while attempts run, this process adopts the orphans of every worker tree, and ends them.

A worker's descendants end with its process group and, on Linux, by the attempt tag in their
environment (worker.end_descendants). One that left the group (`setsid`, a double fork) and also
cleared its environment escapes both. So while any attempt runs here, this process is a child
subreaper (prctl): an orphaned descendant of a worker becomes our child instead of init's.

Which children are adopted orphans: those in another session than ours (each worker runs in a
session of its own, and a descendant can only make new sessions, never join ours), that we did not
start (everything rlm starts in a new session goes through `spawn`, registered under `lock`), and
that were not already our children when we became the subreaper (a test harness's helpers, a
local Dask cluster).

Whose orphan it is, when several attempts run at once: a process that started before every
still running worker cannot descend from one of them, so it belongs to a finished attempt and is
ended at once; one that started later might be a running worker's, and is ended when the workers
that started before it have ended; when the last attempt ends, none is left.

Each is killed (its process group, then itself) and reaped with waitpid on its own pid, never
waitpid(-1), which would take exit statuses from subprocess.Popen.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from rlm_tasks import procs

REAP_SECONDS = 5.0  # how long one sweep waits for the processes it killed to exit
MAX_ROUNDS = 20  # a killed orphan's own children are adopted next: one round per generation

lock = threading.RLock()
_spawned: dict[int, int | None] = {}  # pid -> start ticks: started by us in a session of its own, not yet reaped
_spawning: dict[int, int] = {}  # spawns under way -> the ticks when each began: younger children may be them
_spawn_keys = itertools.count()
_known: set[tuple[int, int]] = set()  # (pid, start ticks): our children before we became the subreaper
_users = 0  # attempts running in this process
_adopting = False  # we are the subreaper, and end it when the last attempt ends
_was_subreaper = False


def spawn(argv: Sequence[str], *, helper: bool = False, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen in a session of its own, registered so that it is never taken for an orphan; `forget` it once
    reaped. A `helper` (the watchdog) lives longer than any worker and starts none: it never makes a later
    orphan look like a running worker's descendant.

    The lock is not held while the process starts (fork and exec take milliseconds, and every attempt
    starting or ending would queue behind them): a sweep meanwhile spares every child that started
    after this spawn began."""
    key = next(_spawn_keys)
    with lock:
        _spawning[key] = procs.ticks_now() - 1  # a tick's rounding either way
    proc = None
    try:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        ticks = procs.start_ticks(proc.pid)
    finally:
        with lock:
            del _spawning[key]
            if proc is not None:
                _spawned[proc.pid] = None if helper else ticks
    return proc


def forget(pid: int) -> None:
    """A process `spawn` started has been reaped (its pid may be reused now)."""
    with lock:
        _spawned.pop(pid, None)


def adopting_now() -> bool:
    """This process is the subreaper of its attempts' descendants now (inside `adopting`, on Linux).

    Read without the lock (held while a worker is spawned or a sweep runs): inside `adopting` the answer
    cannot change, since only the last attempt to leave turns it off."""
    return _adopting


def attempts() -> int:
    """How many attempts run in this process (inside `adopting`)."""
    with lock:
        return _users


@contextlib.contextmanager
def adopting() -> Iterator[None]:
    """For the length of one attempt: this process adopts orphans (Linux), and the last attempt ends them all."""
    global _users, _adopting, _was_subreaper
    with lock:
        if _users == 0:
            was = procs.child_subreaper()  # None: not Linux, nothing to adopt with
            _was_subreaper = bool(was)
            _known.clear()
            if was is not None:
                _known.update((c.pid, c.ticks) for c in procs.children_outside_session(os.getpid(), os.getsid(0)))
            _adopting = was is not None and (_was_subreaper or procs.set_child_subreaper(True))
        _users += 1
    try:
        yield
    finally:
        with lock:
            _users -= 1
            if _users == 0 and _adopting:
                try:
                    sweep()
                finally:
                    if not _was_subreaper:
                        procs.set_child_subreaper(False)
                    _adopting = False


def sweep() -> int:
    """Kill and reap every adopted orphan that cannot belong to a running worker; returns how many."""
    if not _adopting:
        return 0
    ended = 0
    with lock:
        deadline = time.monotonic() + REAP_SECONDS
        unkillable: set[int] = set()
        for _ in range(MAX_ROUNDS):
            running = [ticks for ticks in _spawned.values() if ticks is not None]
            oldest = min(running, default=None)
            victims, reaped = [], False
            spawning = min(_spawning.values(), default=None)
            for child in procs.children_outside_session(os.getpid(), os.getsid(0)):
                if child.pid in _spawned or (child.pid, child.ticks) in _known or child.pid in unkillable:
                    continue
                if spawning is not None and child.ticks >= spawning:
                    continue  # maybe a worker being started now: not registered yet
                if child.ended:  # its children were ours before it was a zombie, maybe not when we looked
                    reaped = _reap(child.pid, deadline) or reaped
                elif oldest is None or child.ticks < oldest:  # else it may descend from a running worker
                    victims.append(child)
            if not victims:
                if reaped:
                    continue
                break
            for child in victims:
                if child.pgid > 1 and child.pgid != os.getpgid(0):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.pgid, signal.SIGKILL)
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except PermissionError:  # a setuid descendant: not ours to end
                    unkillable.add(child.pid)
                except ProcessLookupError:
                    pass
            for child in victims:
                if child.pid not in unkillable and not _reap(child.pid, deadline):
                    unkillable.add(child.pid)  # stuck (uninterruptible sleep): a later sweep reaps it
            ended += sum(child.pid not in unkillable for child in victims)
    return ended


def _reap(pid: int, deadline: float) -> bool:
    """waitpid on this one child until it has exited or `deadline`; True once reaped."""
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done == pid or time.monotonic() >= deadline:
            return done == pid
        time.sleep(0.005)
