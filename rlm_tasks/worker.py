"""Running one worker attempt: argv without a shell, prompt on stdin, own process group, log, timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import jsonio
from .agents import Invocation

KILL_GRACE_SECONDS = 3.0
POLL_SECONDS = 0.2

_live_groups: set[int] = set()
_live_lock = threading.Lock()


@dataclass(frozen=True)
class AttemptResult:
    exit_code: int | None
    timed_out: bool
    started_at: float
    finished_at: float
    error: str | None = None  # the worker could not be started

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at


def kill_group(pgid: int, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_all(sig: int = signal.SIGTERM) -> int:
    """Signal every live worker's process group; returns how many were signalled."""
    with _live_lock:
        groups = list(_live_groups)
    for pgid in groups:
        kill_group(pgid, sig)
    return len(groups)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Ask the whole group to stop, then force it."""
    kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    kill_group(proc.pid, signal.SIGKILL)


def run(invocation: Invocation, prompt: bytes, log_path: Path, cwd: Path, report_path: Path) -> AttemptResult:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                invocation.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if invocation.report_from_stdout else log,
                stderr=log if invocation.report_from_stdout else subprocess.STDOUT,
                cwd=cwd,
                env=invocation.env,
                start_new_session=True,  # own process group: a timeout or signal ends the whole tree
            )
        except OSError as exc:
            message = f"cannot start agent {invocation.argv[0]!r}: {exc.strerror or exc}"
            log.write(message.encode() + b"\n")
            return AttemptResult(None, False, started, time.time(), error=message)
        with _live_lock:
            _live_groups.add(proc.pid)
        timed_out = False
        stdout = b""
        try:
            deadline = None if invocation.timeout is None else started + invocation.timeout
            pending_input: bytes | None = prompt
            while True:
                wait = POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.time()))
                try:
                    out, _ = proc.communicate(pending_input, timeout=wait)
                    stdout += out or b""
                    break
                except subprocess.TimeoutExpired:
                    pending_input = None  # communicate keeps feeding what it already started
                    if deadline is not None and time.time() >= deadline:
                        timed_out = True
                        _end(proc)
                        out, _ = proc.communicate()
                        stdout += out or b""
                        break
        finally:
            kill_group(proc.pid, signal.SIGKILL)  # stragglers the worker left behind
            with _live_lock:
                _live_groups.discard(proc.pid)
    if invocation.report_from_stdout and not timed_out and proc.returncode == 0 and stdout.strip():
        jsonio.write_bytes_atomic(report_path, stdout)
    return AttemptResult(proc.returncode, timed_out, started, time.time())
