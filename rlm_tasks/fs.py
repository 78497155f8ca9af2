"""Filesystem helpers that are not JSON: append-only log lines and removing read-only trees."""

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
