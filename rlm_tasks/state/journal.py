"""An append-only JSON-lines journal: durable O(1) updates in front of a file that is rewritten whole only rarely.

One update is one line, appended and fsynced before the update counts as done.
A SIGKILL in the middle of an append leaves a last line without its newline:
its writer never returned, so readers ignore it (and the next append starts a
fresh line). Compaction (the owner's job) writes the whole file atomically with
every update folded in and then removes the journal; a crash between the two
replays updates the file already holds, which changes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JournalError(ValueError):
    """A complete line of the journal is not a JSON object."""

    def __init__(self, path: Path, lineno: int, why: str) -> None:
        super().__init__(f"{path}:{lineno}: {why}")


def line(op: dict[str, Any]) -> bytes:
    return json.dumps(op, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def read(path: Path) -> list[dict[str, Any]]:
    """The complete lines of the journal, in order; [] when there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    ops: list[dict[str, Any]] = []
    for lineno, raw in enumerate(lines[:-1], start=1):  # lines[-1] is b"" or a torn append
        if not raw.strip():
            continue
        try:
            op = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise JournalError(path, lineno, f"not valid JSON: {exc}") from None
        if not isinstance(op, dict):
            raise JournalError(path, lineno, "not a JSON object")
        ops.append(op)
    return ops


class Appender:
    """Appends lines to one journal file and fsyncs them; not thread-safe (the owner serialises)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def append(self, data: bytes) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            _drop_torn_line(self._fd)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _drop_torn_line(fd: int) -> None:
    """Cut a last line a killed writer left without its newline, so the next line starts clean."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.ftruncate(fd, os.pread(fd, size, 0).rfind(b"\n") + 1)
