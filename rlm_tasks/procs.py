"""Is a recorded process still the one we recorded? (Linux /proc; degrades to kill(pid, 0) elsewhere.)"""

from __future__ import annotations

import os
from typing import Any


def start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since boot: tells a reused pid from the one recorded."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: Any, ticks: Any = None) -> bool:
    """The process exists, is not a zombie, and (when `ticks` is given) started when recorded."""
    if not isinstance(pid, int) or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            if handle.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                return False  # finished, waiting to be reaped
    except (OSError, IndexError):
        pass
    return ticks is None or start_ticks(pid) in (None, ticks)
