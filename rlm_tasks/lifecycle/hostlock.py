"""The half of the run lock that no file holds: a Linux abstract Unix socket.

A worker can delete anything under the repository, the lock file and its
holder record included, and a lock that lives in a file then admits a second
orchestrator. A socket bound in Linux's abstract namespace has no file: its
name exists while the binding process keeps the socket open, a second bind
fails with EADDRINUSE, and the kernel frees the name the moment the holder dies
(SIGKILL too). The socket is close-on-exec, so workers never inherit it and
cannot keep the lock alive after their orchestrator died.

Elsewhere (macOS, a sandbox without AF_UNIX) there is no such name: `take`
says so and the run lock relies on its file lock alone.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import sys
from pathlib import Path

from rlm_tasks.procs import abstract_socket_bound

PREFIX = "rlm-run-lock/"
SUPPORTED = sys.platform.startswith("linux")  # the abstract namespace is Linux's


def lock_name(root: Path, run_id: str) -> str:
    """One name per repository (its real path: a symlinked checkout is the same repository) and run."""
    digest = hashlib.sha256(f"{os.path.realpath(root)}\0{run_id}".encode()).hexdigest()
    return PREFIX + digest  # 77 bytes: well within the 107 an abstract address may have


class HostLockBusy(Exception):
    """Another process on this host (in this network namespace) holds the name."""


class HostLock:
    """The abstract socket of one run; `take` binds it, `release` closes it."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.name = lock_name(root, run_id)
        self._socket: socket.socket | None = None

    @property
    def held(self) -> bool:
        return self._socket is not None

    def take(self) -> bool:
        """True when bound (or already bound by this object); False where abstract sockets do not exist;
        HostLockBusy when another socket has the name."""
        if self._socket is not None:
            return True
        if not SUPPORTED:
            return False
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        except OSError:
            return False  # no AF_UNIX here (a seccomp sandbox): the file lock alone
        try:
            sock.bind(b"\0" + self.name.encode())
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise HostLockBusy(self.name) from None
            return False
        self._socket = sock
        return True

    def release(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __del__(self) -> None:  # a lock object dropped without release: the name goes with it, quietly
        self.release()


def held_on_this_host(root: Path, run_id: str) -> bool:
    """Some process on this host holds the run's lock (read from /proc, never by binding: a probe that bound
    the name for a moment could turn a starting run away)."""
    return abstract_socket_bound(lock_name(root, run_id)) is True
