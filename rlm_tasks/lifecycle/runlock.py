"""The per-run lock: one `doit` per run at a time.

On Linux the lock is first a socket bound in the abstract namespace
(lifecycle/hostlock.py): no file a worker could delete holds it, and the kernel
frees it when its holder dies; while it is bound no other process on this host
takes the lock, --break-lock or not. Then, everywhere, an OS file lock plus a
holder record (pid, host, start) for what the socket cannot see: a holder on
another host sharing the repository, or a platform without abstract sockets.
On a local disk the kernel drops the OS lock when its holder dies, so a crash
never blocks the next run. The record is what is left to judge when the OS
lock proves nothing: a holder on another host, or a filesystem without OS
locks. Such a lock is stale after `lifecycle.lock_stale_hours`, and only
`--break-lock` takes it; every break is logged to .rlm/local/locks/breaks.log.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from rlm_tasks import jsonio, oslock
from rlm_tasks.clock import iso, parse_iso, utc_now
from rlm_tasks.config import defaults, schema
from rlm_tasks.errors import UserError
from rlm_tasks.fs import append_line
from rlm_tasks.layout import BREAKS_LOG, RunLayout, breaks_log
from rlm_tasks.lifecycle.hostlock import HostLock, HostLockBusy
from rlm_tasks.procs import boot_id, hostname, pid_alive, started_at
from rlm_tasks.state import inflight as inflight_state

LOCKED_EXIT_CODE = 3
PID_REUSE_SLACK_SECONDS = 2.0


# ---- the run lock -----------------------------------------------------------------------------------------

class RunLocked(UserError):
    """Another process holds the run's lock (or may: it cannot be proven dead)."""

    exit_code = LOCKED_EXIT_CODE


class RunLockStale(RunLocked):
    """The run's lock is older than lock_stale_hours and its holder cannot be proven dead; --break-lock takes it."""


class Holder(NamedTuple):
    """Who holds a run lock, as recorded in .rlm/local/locks/<run_id>.holder.json (schemas/lock_holder.schema.json)."""

    run_id: str
    pid: int
    host: str
    started_at: str
    boot_id: str | None = None

    @classmethod
    def current(cls, run_id: str) -> Holder:
        return cls(run_id, os.getpid(), hostname(), iso(utc_now()), boot_id())

    @classmethod
    def from_json(cls, data: Any) -> Holder | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(str(data["run_id"]), int(data["pid"]), str(data["host"]), str(data["started_at"]),
                       data.get("boot_id") if isinstance(data.get("boot_id"), str) else None)
        except (KeyError, TypeError, ValueError):
            return None

    def as_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "pid": self.pid, "host": self.host, "started_at": self.started_at,
                "boot_id": self.boot_id}

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started_at}"


def holder_is_dead(holder: Holder, *, os_lock_taken: bool) -> bool | None:
    """True: provably dead; False: alive; None: cannot tell from this host."""
    if holder.host != hostname():
        return None
    mine = boot_id()
    if holder.boot_id and mine and holder.boot_id != mine:
        return True  # recorded before this machine rebooted
    if holder.pid == os.getpid():
        # Same process: the OS lock we just took proves no lock object in this process holds it.
        return os_lock_taken
    if not pid_alive(holder.pid):
        return True
    # A process younger than the lock has merely reused the holder's pid.
    started, since = started_at(holder.pid), parse_iso(holder.started_at)
    return started is not None and since is not None and (started - since).total_seconds() > PID_REUSE_SLACK_SECONDS


class RunLock:
    """The run's lock: a host lock, an OS file lock and a holder record; see the module docstring."""

    def __init__(self, layout: RunLayout, stale_hours: float = defaults.LOCK_STALE_HOURS) -> None:
        self.layout = layout
        self.stale_hours = stale_hours
        self._host = HostLock(layout.root, layout.run_id)
        self._lock = oslock.OsLock(layout.lock_file)
        self._os_locked = False
        self._holder: Holder | None = None

    @property
    def held(self) -> bool:
        return self._holder is not None

    def _where(self) -> str:
        return self.layout.lock_file.relative_to(self.layout.root).as_posix()

    def _take_host_lock(self) -> None:
        try:
            self._host.take()
        except HostLockBusy:
            self._refuse_host_lock_holder()

    def _refuse_host_lock_holder(self) -> None:
        """Another process on this host holds the run's abstract socket: it lives, so no --break-lock takes it."""
        exists, holder, _ = self._read_checked_holder()
        if holder is not None:
            raise RunLocked(f"run '{self.layout.run_id}' is locked by another process ({holder.describe()}); "
                            f"lock: {self._where()}")
        if not exists:
            self._refuse_live_orchestrator()  # names the pid when inflight.json survived
        why = "its holder record is unreadable" if exists else "its holder record was removed, but the lock holds"
        raise RunLocked(f"run '{self.layout.run_id}' is locked by another process on this host ({why}); "
                        f"lock: {self._where()}")

    def _take_os_lock(self) -> bool:
        """True when taken, False when the filesystem has no OS locks; RunLocked when another process holds it."""
        try:
            taken = self._lock.acquire()
        except OSError as exc:
            if oslock.unsupported(exc):
                return False
            raise UserError(f"cannot lock run '{self.layout.run_id}': {self._where()}: {oslock.why(exc)}") from None
        if not taken:
            holder = Holder.from_json(self._read_holder())
            who = holder.describe() if holder else "holder unknown"
            raise RunLocked(f"run '{self.layout.run_id}' is locked by another process ({who}); lock: {self._where()}")
        return True

    def _read_holder(self) -> Any:
        try:
            return jsonio.read_json(self.layout.lock_holder_json)
        except ValueError:
            return {}  # unreadable: judged like a holder we cannot prove dead

    def _read_checked_holder(self) -> tuple[bool, Holder | None, str]:
        """(record exists, holder when well-formed, what is wrong with it otherwise)."""
        try:
            raw = jsonio.loads(self.layout.lock_holder_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False, None, ""
        except ValueError:
            return True, None, "not valid JSON"
        problems = schema.check("lock_holder", raw)
        if problems:
            return True, None, f"does not match lock_holder.schema.json ({problems[0]})"
        return True, Holder.from_json(raw), ""

    def acquire(self, *, break_lock: bool = False) -> None:
        """Take the lock or raise RunLocked / RunLockStale; `break_lock` takes a stale one and logs it."""
        self._take_host_lock()
        try:
            self.layout.lock_file.parent.mkdir(parents=True, exist_ok=True)
            self._os_locked = self._take_os_lock()
        except BaseException:
            self._host.release()
            raise
        try:
            self._judge_previous(break_lock)
            self._refuse_live_orchestrator()
            me = Holder.current(self.layout.run_id)
            self._write_holder(me)
            self._holder = me
        except BaseException:
            self._release_os_lock()
            self._host.release()
            raise

    def _judge_previous(self, break_lock: bool) -> None:
        path = self.layout.lock_holder_json
        exists, holder, malformed = self._read_checked_holder()
        if not exists:
            return
        dead = holder_is_dead(holder, os_lock_taken=self._os_locked) if holder else None
        if dead:  # a crashed holder never blocks, and its lock is never taken silently
            self._break(path, f"left by a dead holder ({holder.describe() if holder else 'unknown'})")
            sys.stderr.write(f"rlm: warning: took the lock of run '{self.layout.run_id}' left by a dead holder "
                             f"({holder.describe() if holder else 'unknown'}); recorded in {BREAKS_LOG}\n")
            return
        if holder is None and self._os_locked:
            self._judge_malformed(malformed, break_lock)
            return
        who = holder.describe() if holder else "holder record unreadable"
        if dead is False:
            raise RunLocked(f"run '{self.layout.run_id}' is locked by a live process ({who}); lock: {self._where()}")
        since = parse_iso(holder.started_at) if holder else None
        if since is None:
            try:
                since = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
            except FileNotFoundError:
                return  # removed meanwhile: nobody to judge
        hours = (utc_now() - since).total_seconds() / 3600
        if hours < self.stale_hours:
            raise RunLocked(
                f"run '{self.layout.run_id}' is locked by {who} ({hours:.1f} hours ago), which rlm cannot check "
                f"from this host; the lock counts as stale after lock_stale_hours ({self.stale_hours:g}); "
                f"lock: {self._where()}")
        if not break_lock:
            raise RunLockStale(
                f"run '{self.layout.run_id}' has a stale lock: {who} ({hours:.1f} hours ago, more than "
                f"lock_stale_hours {self.stale_hours:g}); rlm cannot tell whether it still runs. If it does not, "
                f"take the lock with --break-lock, e.g. `rlm run --break-lock` (logged to {BREAKS_LOG})")
        self._break(path, f"held by {who} ({hours:.1f} hours old, lock_stale_hours {self.stale_hours:g})")

    def _break(self, record: Path, whose: str) -> None:
        """Log who broke (or took over) whose lock in breaks.log, then remove the holder record."""
        me = Holder.current(self.layout.run_id)
        append_line(breaks_log(self.layout.root),
                    f"{iso(utc_now())} broke the lock of run '{self.layout.run_id}' {whose}; taken by {me.describe()}")
        record.unlink(missing_ok=True)

    def _refuse_live_orchestrator(self) -> None:
        """The lock file lives in the repository, where a worker can delete it (and a new one is then free);
        inflight.json still names the orchestrator of the run that goes on, and while it lives the run is its."""
        data = inflight_state.read(self.layout)
        pid = (data.get("orchestrator") or {}).get("pid")
        if pid != os.getpid() and inflight_state.orchestrator_alive(data):
            raise RunLocked(f"run '{self.layout.run_id}' is run by a live orchestrator (pid {pid}, recorded in "
                            f"{self.layout.inflight_rel}) although its lock file was removed; lock: {self._where()}")

    def _judge_malformed(self, malformed: str, break_lock: bool) -> None:
        """A holder record nobody can read while the OS lock is free: only --break-lock removes it (logged)."""
        record = self.layout.lock_holder_json.relative_to(self.layout.root).as_posix()
        if not break_lock:
            raise RunLockStale(
                f"run '{self.layout.run_id}' has a malformed lock holder record {record}: {malformed}; "
                f"the OS lock is free, so if no rlm runs this run, take the lock with --break-lock, "
                f"e.g. `rlm run --break-lock` (logged to {BREAKS_LOG})")
        self._break(self.layout.lock_holder_json, f"with a malformed holder record ({malformed})")

    def _write_holder(self, me: Holder) -> None:
        if self._os_locked:
            jsonio.write_json(self.layout.lock_holder_json, me.as_json())
            return
        # Without an OS lock the record itself is the lock: create it only if nobody else did.
        fd, tmp = tempfile.mkstemp(prefix=".holder.", suffix=".tmp", dir=self.layout.lock_holder_json.parent)
        try:
            os.fchmod(fd, jsonio.new_file_mode(self.layout.lock_holder_json))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(jsonio.dumps(me.as_json()))
            os.link(tmp, self.layout.lock_holder_json)
        except FileExistsError:
            raise RunLocked(f"run '{self.layout.run_id}' was locked by another process just now; "
                            f"lock: {self._where()}") from None
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _release_os_lock(self) -> None:
        if self._os_locked and self._lock.held:
            self._lock.release()
        self._os_locked = False

    def release(self) -> None:
        if self._holder is None:
            return
        if Holder.from_json(self._read_holder()) == self._holder:
            self.layout.lock_holder_json.unlink(missing_ok=True)
        self._holder = None
        self._release_os_lock()
        self._host.release()  # last: whoever takes the lock next finds no record of ours

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
