"""Running one worker attempt: argv without a shell, prompt on stdin, own process group, log, timeout, stall.

Every live worker's process group is registered here, so a signal to the
orchestrator reaches all of them (`begin_shutdown`) and no new one starts after.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from rlm_tasks import procs, secrets
from rlm_tasks.config import paths
from rlm_tasks.errors import UserError
from rlm_tasks.procs import group_alive
from rlm_tasks.render.agents import Invocation
from rlm_tasks.run import orphans, watchdog, workerio
from rlm_tasks.state.reports import MAX_REPORT_BYTES

KILL_GRACE_ENV = "RLM_KILL_GRACE_SECONDS"
TAG_ENV = "RLM_ATTEMPT_TAG"  # one random value per attempt, inherited by everything the worker starts
MAX_LOG_BYTES = 100 * 1024 * 1024  # a worker's log past this ends the attempt; the tail is kept
LOG_TAIL_BYTES = 1024 * 1024
KILL_GRACE_SECONDS = 3.0  # the default: how long a worker group asked to stop (SIGTERM) has before SIGKILL
MAX_KILL_GRACE_SECONDS = 3600.0  # beyond this a wait's timeout overflows, and no grace needs an hour
POLL_SECONDS = 0.2

# RLock: the signal handler runs in the main thread, which may hold it (serial runner).
_live_lock = threading.RLock()
_live_groups: set[int] = set()
_shutdown_signal: int | None = None
_shutdown = threading.Event()


class AttemptResult(NamedTuple):
    exit_code: int | None
    timed_out: bool
    started_at: float
    finished_at: float
    error: str | None = None  # the worker could not be started
    stalled: bool = False
    interrupted: bool = False  # ended because the orchestrator is shutting down
    pid: int | None = None
    over_cap: str | None = None  # ended because its stdout report or its log went over the cap

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at


def end_descendants(tag: str) -> int:
    """SIGKILL every process started with this attempt's tag, until none is left (a forking one may add more
    between two looks), and wait until they have exited (their children are orphans by then); returns how
    many were killed."""
    killed: dict[int, int | None] = {}
    for _ in range(10):
        pids = [pid for pid in procs.tagged(TAG_ENV, tag, _ours()) if pid != os.getpid()]
        if not pids:
            break
        for pid in pids:
            ticks = procs.start_ticks(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed[pid] = ticks
        time.sleep(0.01)
    _until(lambda: not any(procs.pid_alive(pid, ticks) for pid, ticks in killed.items()))
    return len(killed)


def _ours() -> list[int] | None:
    """This process's descendants while it is their subreaper (Linux): then every process a worker left
    behind is one of them, and only they need a look. None: look at every process."""
    if not orphans.adopting_now():
        return None
    tree = procs.descendants()
    return None if tree is None else list(tree)


def _group_alive(pgid: int) -> bool:
    """group_alive for a worker's group: kill(0) first (mostly the group is gone), then only among our descendants."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return group_alive(pgid, _ours())


def _until(done: Callable[[], bool], seconds: float = orphans.REAP_SECONDS) -> None:
    """Poll until `done` or `seconds` (a SIGKILLed process takes a moment to exit; a stuck one never does)."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)


def kill_group(pgid: int, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class BadKillGrace(UserError):
    """$RLM_KILL_GRACE_SECONDS is not a number of seconds from 0 to MAX_KILL_GRACE_SECONDS."""

    exit_code = 2


def kill_grace() -> float:
    """The grace period from $RLM_KILL_GRACE_SECONDS (unset or empty: KILL_GRACE_SECONDS); BadKillGrace if invalid."""
    raw = os.environ.get(KILL_GRACE_ENV, "").strip()
    if not raw:
        return KILL_GRACE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= MAX_KILL_GRACE_SECONDS):
        raise BadKillGrace(f"{KILL_GRACE_ENV}: expected a number of seconds from 0 to {MAX_KILL_GRACE_SECONDS:g}, "
                           f"got {raw!r}")
    return value


def kill_grace_or_default() -> float:
    """kill_grace() where a run is already going: loading validated it, so an error here means the
    variable changed under a running process; the default then, never an exception while ending workers."""
    try:
        return kill_grace()
    except BadKillGrace:
        return KILL_GRACE_SECONDS


def end_groups(pgids: Sequence[int], grace: float | None = None, sig: int = signal.SIGTERM) -> None:
    """Ask process groups that are not our children to stop, then force them (one grace period for all)."""
    grace = kill_grace_or_default() if grace is None else grace
    for pgid in pgids:
        kill_group(pgid, sig)
    deadline = time.monotonic() + grace
    while any(group_alive(p) for p in pgids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pgid in pgids:
        kill_group(pgid, signal.SIGKILL)


def end_group(pgid: int, grace: float | None = None, sig: int = signal.SIGTERM) -> None:
    end_groups([pgid], grace, sig)


def live_groups() -> list[int]:
    with _live_lock:
        return sorted(_live_groups)


def terminate_all(sig: int = signal.SIGTERM) -> int:
    """Signal every live worker's process group; returns how many were signalled."""
    groups = live_groups()
    for pgid in groups:
        kill_group(pgid, sig)
    return len(groups)


def begin_shutdown(sig: int) -> int:
    """No worker starts from now on; every live group gets `sig`. Safe to call from a signal handler."""
    global _shutdown_signal
    with _live_lock:
        if _shutdown_signal is None:
            _shutdown_signal = sig
        _shutdown.set()
        return terminate_all(sig)


def shutting_down() -> bool:
    return _shutdown.is_set()


def shutdown_event() -> threading.Event:
    return _shutdown


def reset_shutdown() -> None:
    """Forget a finished shutdown (a later run in the same process, e.g. tests)."""
    global _shutdown_signal
    with _live_lock:
        _shutdown_signal = None
        _shutdown.clear()


def drain(timeout: float) -> bool:
    """Wait until no worker group is live; SIGKILL what is left after `timeout`, then wait (briefly) until every
    attempt has ended its descendants and orphans: doit's threads are daemons, gone when the process exits.
    True if none had to be killed."""
    deadline = time.monotonic() + timeout
    while live_groups() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = live_groups()
    for pgid in left:
        kill_group(pgid, signal.SIGKILL)
    _until(lambda: not live_groups() and not orphans.attempts())
    return not left


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Ask the whole group to stop, then force it."""
    kill_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=kill_grace_or_default())
    kill_group(proc.pid, signal.SIGKILL)


def signature(paths: Sequence[Path]) -> tuple[tuple[int, int] | None, ...]:
    """What changes when a worker makes progress: mtime and size of each watched file."""
    out: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return tuple(out)


def _exit_waiter(proc: subprocess.Popen[bytes]) -> tuple[Callable[[float], bool], int | None]:
    """wait(timeout) -> exited. Linux wakes us the moment the worker exits (pidfd); elsewhere poll finely."""
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None

    def wait(timeout: float) -> bool:
        if proc.poll() is not None:
            return True
        if pidfd is not None:
            select.select([pidfd], [], [], timeout)
        else:
            end = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < end:
                time.sleep(0.01)
        return proc.poll() is not None

    return wait, pidfd


def run(invocation: Invocation, prompt: bytes, log_path: Path, cwd: Path, report_path: Path, *,
        stall_after: float | None = None, watch: Sequence[Path] = (),
        on_start: Callable[[int, float], None] | None = None, events_path: Path | None = None,
        cancel: Callable[[], bool] | None = None) -> AttemptResult:
    """One attempt. `watch` (with the log and the report) is what stall detection looks at.

    With `events_path` and an agent that streams events, its stdout goes there (and, readable, to the log).
    `cancel` (asked every poll) says the orchestrator wants it ended: a remote attempt's Dask Event.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stop = threading.Event()
    streaming = events_path is not None and invocation.events is not None and not invocation.report_from_stdout
    watched = [log_path, report_path, *watch, *([events_path] if streaming and events_path else [])]
    # the agent's output reaches its log through us, masked (rlm_tasks.secrets), unless it must outlive us
    masked = not watchdog.keeping()
    with log_path.open("wb") as log, contextlib.ExitStack() as files:
        events = files.enter_context(events_path.open("wb")) if streaming and events_path is not None else None
        shared_log = secrets.SharedLog(log)
        if _shutdown.is_set():
            return AttemptResult(None, False, started, time.time(), error="interrupted", interrupted=True)
        captured = workerio.StdoutReport(log_path.with_name(log_path.name + ".stdout"), MAX_REPORT_BYTES)
        try:
            tag = os.urandom(8).hex()  # what secrets.token_hex is, without its import on every run
            files.enter_context(orphans.adopting())  # Linux: what leaves the tree with no tag comes to us
            stdout = (files.enter_context(captured.open()) if invocation.report_from_stdout
                      else subprocess.PIPE if masked else (events or log))
            proc = orphans.spawn(  # own session and process group: a timeout or signal ends the whole tree
                invocation.argv,
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=((subprocess.PIPE if masked else log) if invocation.report_from_stdout or events
                        else subprocess.STDOUT),
                cwd=cwd,
                env={**invocation.env, TAG_ENV: tag},
            )
        except OSError as exc:
            message = f"cannot start agent {invocation.argv[0]!r}: {exc.strerror or exc}"
            log.write(message.encode() + b"\n")
            return AttemptResult(None, False, started, time.time(), error=message)
        with _live_lock:  # a shutdown either sees this group, or began while it started: then it is ended here
            _live_groups.add(proc.pid)
            # should this process die (SIGKILL included), its watchdog ends the group
            watchdog.watch(proc.pid, procs.start_ticks(proc.pid), tag, kill_grace_or_default())
            late = _shutdown_signal if _shutdown.is_set() else None
        if late is not None:
            kill_group(proc.pid, late)
        timed_out = stalled = cancelled = False
        over_cap: str | None = None
        rest = workerio.feed_at_once(proc.stdin, prompt)
        helpers = [threading.Thread(target=workerio.feed_prompt, args=(proc.stdin, rest), daemon=True,
                                    name="rlm-stdin")] if rest else []
        if events is not None and events_path is not None and invocation.events is not None:
            helpers.append(threading.Thread(target=workerio.follow_events,
                                            args=(events_path, shared_log, invocation.events, stop, POLL_SECONDS),
                                            daemon=True, name="rlm-events"))
        if proc.stdout is not None:
            sink = secrets.SharedLog(events) if events is not None else shared_log
            helpers.append(threading.Thread(target=secrets.pump, args=(proc.stdout, sink, invocation.secrets),
                                            daemon=True, name="rlm-stdout"))
        if proc.stderr is not None:
            helpers.append(threading.Thread(target=secrets.pump, args=(proc.stderr, shared_log, invocation.secrets),
                                            daemon=True, name="rlm-stderr"))
        for helper in helpers:
            helper.start()
        exited, pidfd = _exit_waiter(proc)
        try:
            if on_start is not None:
                on_start(proc.pid, started)
            deadline = None if invocation.timeout is None else started + invocation.timeout
            last_sig, last_change = (signature(watched), captured.size), time.monotonic()
            while True:
                wait = POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.time()))
                if exited(wait):
                    break
                if deadline is not None and time.time() >= deadline:
                    timed_out = True
                elif stall_after is not None:
                    sig = (signature(watched), captured.size)  # stdout of a `report: stdout` agent counts too
                    if sig != last_sig:
                        last_sig, last_change = sig, time.monotonic()
                    elif time.monotonic() - last_change >= stall_after:
                        stalled = True
                if captured.over():
                    over_cap = f"report on stdout went over the {MAX_REPORT_BYTES:,}-byte cap"
                elif os.fstat(log.fileno()).st_size > MAX_LOG_BYTES:
                    over_cap = f"log went over the {MAX_LOG_BYTES:,}-byte cap (its tail is kept)"
                if not (timed_out or stalled or over_cap) and cancel is not None and cancel():
                    cancelled = True
                if timed_out or stalled or over_cap or cancelled:
                    _end(proc)
                    proc.wait()
                    break
        finally:
            kill_group(proc.pid, signal.SIGKILL)  # stragglers the worker left behind
            end_descendants(tag)  # and those that left its process group (setsid, double fork)
            _until(lambda: not _group_alive(proc.pid))  # exited: what they started is an orphan now
            if proc.poll() is None:  # an exception above: never leave a child unreaped
                proc.wait()
            orphans.forget(proc.pid)
            orphans.sweep()  # and orphans that also cleared their environment, adopted by this process (Linux)
            if pidfd is not None:
                os.close(pidfd)
            stop.set()
            for helper in helpers:
                helper.join(timeout=kill_grace_or_default())
            with _live_lock:
                _live_groups.discard(proc.pid)
            watchdog.unwatch(proc.pid)
    if over_cap is None and captured.over():  # went over between the last poll and the exit
        over_cap = f"report on stdout went over the {MAX_REPORT_BYTES:,}-byte cap"
    with contextlib.suppress(FileNotFoundError):  # a worker may have removed .rlm/local/, its log with it
        if log_path.stat().st_size > MAX_LOG_BYTES:
            workerio.trim_log(log_path, LOG_TAIL_BYTES, MAX_LOG_BYTES)
    interrupted = (_shutdown.is_set() or cancelled) and not (timed_out or stalled)
    ended_early = timed_out or stalled or cancelled or over_cap is not None
    if invocation.report_from_stdout and not ended_early and proc.returncode == 0 and not captured.blank():
        try:
            paths.confined(cwd, os.path.relpath(report_path, cwd), "report_path")
            os.replace(captured.path, report_path)  # same filesystem: both under the repository
        except (paths.UnsafePath, OSError) as exc:
            over_cap = str(exc) if isinstance(exc, paths.UnsafePath) else f"cannot write the report: {exc}"
    with contextlib.suppress(OSError):
        captured.path.unlink()
    return AttemptResult(proc.returncode, timed_out, started, time.time(), stalled=stalled,
                         interrupted=interrupted, pid=proc.pid, over_cap=over_cap)
