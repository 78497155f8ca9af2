"""The watchdog process (run/watchdog.py starts it): standard library only, run as `python -I watchdog_main.py GRACE`.

Reads `+ PGID TICKS TAG`, `- PGID` and `bye` lines on stdin; at EOF without `bye`, ends every group still listed
and every process carrying a listed attempt tag.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].split()[19].decode()


def _tagged(tag: str) -> list[int]:
    needle = f"RLM_ATTEMPT_TAG={tag}".encode()
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    with open(f"/proc/{entry}/environ", "rb") as handle:
                        if needle in handle.read().split(b"\0"):
                            found.append(int(entry))
                except OSError:
                    continue
    return found


def _end(groups: dict[int, tuple[str, str]], grace: float) -> None:
    # a leader alive with another start time means the pid was reused: not ours. A pid in use as a process
    # group id is never handed out again, so a group whose leader exited is still the worker's.
    ours = [pgid for pgid, (ticks, _) in groups.items() if ticks == "-" or _start_ticks(pgid) in (None, ticks)]
    for pgid in ours:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        alive = False
        for pgid in ours:
            try:
                os.killpg(pgid, 0)
                alive = True
            except OSError:
                pass
        if not alive:
            break
        time.sleep(0.05)
    for pgid in ours:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    for _ in range(5):  # descendants that left the group (setsid, double fork) still carry the tag
        pids = [p for _, tag in groups.values() for p in _tagged(tag)]
        if not pids:
            break
        for p in pids:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        time.sleep(0.02)


def _main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        grace = float(argv[1]) if len(argv) > 1 else 3.0
    except ValueError:
        grace = 3.0
    groups: dict[int, tuple[str, str]] = {}
    for raw in sys.stdin.buffer:
        parts = raw.decode("ascii", "replace").split()
        if parts == ["bye"]:
            return 0
        with contextlib.suppress(ValueError, IndexError):
            if parts[0] == "+" and len(parts) == 4:
                groups[int(parts[1])] = (parts[2], parts[3])
            elif parts[0] == "-":
                groups.pop(int(parts[1]), None)
    if groups:
        _end(groups, grace)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv))
