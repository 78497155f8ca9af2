"""Filesystem helpers that are not JSON: append-only log lines, removing read-only trees, a closed pipe."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path


def append_line(path: Path, line: str) -> None:
    """One write per line with O_APPEND, so lines from concurrent processes never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def discard_output(stream: object) -> None:
    """The reader of `stream` went away (`doit | head`): point its descriptor at /dev/null.

    Later writes and the interpreter's last flush then succeed and go nowhere, so a run whose
    output nobody reads any more still finishes its workers instead of dying on a BrokenPipeError.
    """
    try:
        fileno = stream.fileno()  # type: ignore[attr-defined]
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):
        return
    try:
        os.dup2(devnull, fileno)
    finally:
        os.close(devnull)


def remove_tree(path: Path) -> None:
    """rmtree that also removes read-only archives (their directories are 0555)."""
    def make_writable_and_retry(func: Callable[[str], object], target: str, _exc: object) -> None:
        parent = os.path.dirname(target)
        os.chmod(parent, stat.S_IRWXU | os.stat(parent).st_mode)
        if os.path.isdir(target) and not os.path.islink(target):
            os.chmod(target, stat.S_IRWXU | os.stat(target).st_mode)
        func(target)

    if not path.exists():
        return
    if path.is_dir() and not path.is_symlink():
        for dirpath, _dirs, _files in os.walk(path):
            os.chmod(dirpath, stat.S_IRWXU | os.stat(dirpath).st_mode)
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable_and_retry)
    else:  # onerror is deprecated from 3.12 on
        shutil.rmtree(path, onerror=make_writable_and_retry)
