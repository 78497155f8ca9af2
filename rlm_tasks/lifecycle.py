"""Run lifecycle: the per-run lock (one `doit` per run at a time)."""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path
from typing import Any

import filelock

from . import jsonio
from .errors import UserError
from .layout import RunLayout

LOCKED_EXIT_CODE = 3


class RunLocked(UserError):
    """Another process holds the run's lock."""

    exit_code = LOCKED_EXIT_CODE


def _holder_text(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"


class RunLock:
    """An OS file lock (released by the kernel if the holder dies) plus a note saying who holds it."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout
        self._lock = filelock.FileLock(str(layout.lock_file), timeout=0)

    def acquire(self) -> None:
        Path(self.layout.lock_file).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            holder = jsonio.read_json(self.layout.lock_holder_json)
            raise RunLocked(
                f"run '{self.layout.run_id}' is locked by another process ({_holder_text(holder)}); "
                f"lock: {self.layout.lock_file.relative_to(self.layout.root)}"
            ) from None
        jsonio.write_json(self.layout.lock_holder_json, {
            "run_id": self.layout.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        })

    def release(self) -> None:
        if self._lock.is_locked:
            self.layout.lock_holder_json.unlink(missing_ok=True)
            self._lock.release()
