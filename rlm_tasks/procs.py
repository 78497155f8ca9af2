"""This machine and its processes, from Linux /proc (degrading to kill(pid, 0) elsewhere).

The one reader of `/proc/<pid>/stat`: whether a recorded process is still the
one recorded (its start time), a zombie, or a member of a process group; which
children of ours are in another session; and prctl's child-subreaper switch.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import sys
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, NamedTuple

# Indexes into the fields after the ")" that ends the command name: field 3 of proc(5) is index 0.
STATE, PPID, PGRP, SESSION, STARTTIME = 0, 1, 2, 3, 19
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37  # prctl(2), Linux 3.4+
ENDED_STATES = (b"Z", b"X")  # finished, waiting to be reaped (or being reaped)
# How old the snapshot of processes that are not our descendants may get: they can never become ours
# (a process is only ever reparented to an ancestor), and a pid can only be reused by another process
# after the kernel has handed out every other pid (pid_max, at least 32,768), which takes far longer.
FULL_SCAN_SECONDS = 1.0


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """/proc/<pid>/stat split after the command name (which may hold spaces and parentheses); None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > STARTTIME else None


def ticks_now() -> int:
    """Now, in the clock ticks of a process's start time (never later than a process starting now would show:
    that field counts from boot, on the monotonic or the boot-time clock depending on the kernel)."""
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * os.sysconf("SC_CLK_TCK"))


def start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since boot: tells a reused pid from the one recorded."""
    fields = _stat_fields(pid)
    try:
        return int(fields[STARTTIME]) if fields else None
    except ValueError:
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
    fields = _stat_fields(pid)
    if fields and fields[STATE] in ENDED_STATES:
        return False
    return ticks is None or start_ticks(pid) in (None, ticks)


class _Table:
    """The /proc/<pid>/stat fields of every process, refreshed incrementally (`descendants`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fields: dict[int, list[bytes]] = {}
        self.full_at: float | None = None
        self.owner = 0  # the pid whose descendants were re-read (a forked child starts over)
        self.tree: set[int] = set()  # its descendants at the last look


_table = _Table()


def _every_process() -> dict[int, list[bytes]] | None:
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    found = {}
    for name in names:
        if name.isdigit() and (fields := _stat_fields(name)) is not None:
            found[int(name)] = fields
    return found


def _tree(fields: dict[int, list[bytes]], root: int) -> list[int]:
    children: dict[bytes, list[int]] = {}
    for pid, stat in fields.items():
        children.setdefault(stat[PPID], []).append(pid)
    found, queue = [], [root]
    while queue:
        for child in children.get(str(queue.pop()).encode(), ()):
            found.append(child)
            queue.append(child)
    return found


def descendants() -> dict[int, list[bytes]] | None:
    """Linux: the stat fields of every descendant of this process; None where /proc cannot be listed.

    Reading every /proc/<pid>/stat costs ~0.2 ms a process on some kernels, and a busy machine has
    hundreds: a scan per finished attempt was most of a first run's time. So a scan re-reads only the
    new pids and the last scan's descendants of `root` (their parent or state may have changed), and
    keeps the rest as they were, re-reading everything once the snapshot is FULL_SCAN_SECONDS old.
    """
    with _table.lock:
        try:
            pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return None
        old, now, root = _table.fields, time.monotonic(), os.getpid()
        full = _table.full_at is None or now - _table.full_at >= FULL_SCAN_SECONDS or _table.owner != root
        if full:
            _table.full_at, _table.owner = now, root
        again = set() if full else _table.tree
        fresh: dict[int, list[bytes]] = {}
        for pid in pids:
            stat = old.get(pid) if not full and pid not in again else None
            if stat is None:
                stat = _stat_fields(pid)
            if stat is not None:
                fresh[pid] = stat
        _table.fields = fresh
        tree = _tree(fresh, root)
        _table.tree = set(tree)
        return {pid: fresh[pid] for pid in tree}


def group_has_live_member(pgid: int, among: Collection[int] | None = None) -> bool | None:
    """Does any non-zombie process have this process group id? None when /proc cannot tell.

    `among`: the only pids that can be members (this process's descendants, when a worker's group is asked)."""
    try:
        names = [int(name) for name in os.listdir("/proc") if name.isdigit()] if among is None else among
    except OSError:
        return None
    wanted = str(pgid).encode()
    for pid in names:
        fields = _stat_fields(pid)
        if fields and fields[PGRP] == wanted and fields[STATE] not in ENDED_STATES:
            return True
    return False


def group_alive(pgid: int, among: Collection[int] | None = None) -> bool:
    """Some process of the group still runs. Zombies do not count: an orphan's group may linger as
    zombies until init reaps them, and kill(0) still succeeds on those."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but not ours to signal
    return group_has_live_member(pgid, among) is not False


def started_at(pid: int) -> dt.datetime | None:
    """When a process started, as a UTC time (boot time + start ticks); None if unknown."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    try:
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text(encoding="utf-8").splitlines()
                     if line.startswith("btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return dt.datetime.fromtimestamp(btime + ticks / os.sysconf("SC_CLK_TCK"), dt.timezone.utc)


def hostname() -> str:
    return socket.gethostname()


def boot_id() -> str | None:
    """Linux's id of this boot: a process recorded under another boot is dead."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def tagged(name: str, value: str, among: Collection[int] | None = None) -> list[int]:
    """Linux: pids whose environment (as they were started) holds NAME=value; [] where /proc cannot tell.

    A worker's descendants inherit its environment, so this finds them even after `setsid` or a double
    fork took them out of its process group (only one that cleared its environment at exec escapes).
    `among`: the only pids to look at (this process's descendants, while it is their subreaper).
    """
    needle = f"{name}={value}".encode()
    found = []
    try:
        names = [name for name in os.listdir("/proc") if name.isdigit()] if among is None else among
    except OSError:
        return []
    for entry in names:
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:  # gone, or not ours to read (then not ours to kill either)
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def abstract_socket_bound(name: str) -> bool | None:
    """Linux: a Unix socket is bound to this abstract name (shown as `@name` in /proc/net/unix); None if unknown."""
    wanted = f"@{name}"
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as handle:
            return any(line.split()[-1:] == [wanted] for line in handle)
    except OSError:
        return None


class Child(NamedTuple):
    pid: int
    pgid: int
    ticks: int  # start time: tells a reused pid from the one seen
    ended: bool  # a zombie, waiting for its parent to reap it


def children_outside_session(parent: int, session: int) -> list[Child]:
    """Linux: the children of `parent` that are in another session than `session`; [] where /proc cannot tell."""
    tree = descendants() if parent == os.getpid() else _every_process()
    if tree is None:
        return []
    found = []
    wanted = str(parent).encode()
    for pid, fields in tree.items():
        if fields[PPID] != wanted:
            continue
        try:
            child = Child(pid, int(fields[PGRP]), int(fields[STARTTIME]), fields[STATE] in ENDED_STATES)
            if int(fields[SESSION]) != session:
                found.append(child)
        except ValueError:
            continue
    return found


@functools.cache
def _prctl() -> Any:
    """libc's prctl where this is Linux and ctypes can reach it; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def child_subreaper() -> bool | None:
    """Linux: is this process a child subreaper (orphaned descendants become its children, not init's)?
    None where that cannot be asked."""
    import ctypes

    prctl, flag = _prctl(), ctypes.c_int(0)
    if prctl is None or prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
        return None
    return bool(flag.value)


def set_child_subreaper(on: bool) -> bool:
    """Linux: make this process a child subreaper (or no longer one); False where that is not possible."""
    import ctypes

    prctl = _prctl()
    return prctl is not None and prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(int(on)), 0, 0, 0) == 0
