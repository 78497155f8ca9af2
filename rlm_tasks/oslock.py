"""An exclusive OS lock on a lock file: `fcntl.flock`, taken without blocking.

rlm runs only on POSIX (process groups, setsid, killpg), where this is all a
file-lock library would do, and importing one cost 5 ms of every run. The
kernel drops a flock when the last descriptor of its holder closes, so a
holder that crashed (SIGKILL too) never blocks the next one. A flock belongs to
one open of the file: a second `OsLock` on the same path conflicts with the
first even in the same process. The lock file is left in place on release:
unlinking it would let two processes lock two different files of one name.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

POLL_SECONDS = 0.05
# The filesystem has no OS locks (some network mounts): a caller falls back on what it records itself.
NO_OS_LOCKS = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP})
# Another open of the file holds the lock; some filesystems answer EACCES instead of EWOULDBLOCK.
_HELD_ELSEWHERE = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES})


def unsupported(exc: OSError) -> bool:
    """The OSError says this filesystem has no OS locks (rather than a lock held or a file we cannot open)."""
    return exc.errno in NO_OS_LOCKS


def why(exc: OSError) -> str:
    """Why a lock could not be taken, for a one-line error."""
    if exc.errno == errno.ELOOP:
        return "a symlink stands in place of the lock file (not followed; remove it)"
    if unsupported(exc):
        return f"this filesystem has no OS locks ({exc.strerror})"
    return exc.strerror or str(exc)


class OsLock:
    """One lock file; `acquire` takes the flock or reports it held, `release` gives it back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float = 0.0) -> bool:
        """True when taken (or already held by this object); False when another holder keeps it past `wait`
        seconds. OSError when the file cannot be opened or locked (`unsupported` tells a filesystem without locks)."""
        deadline = time.monotonic() + wait
        while not self._try():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)  # flock cannot wait with a timeout: poll, as any file lock does
        return True

    def _try(self) -> bool:
        if self._fd is not None:
            return True
        for _ in range(3):  # the file unlinked between our open and our flock: open the new one
            fd = self._locked_fd()
            if fd is None:
                return False
            if os.fstat(fd).st_nlink:
                self._fd = fd
                return True
            os.close(fd)  # a lock on an unlinked file guards no name
        return False

    def _locked_fd(self) -> int | None:
        """A descriptor of the lock file with our flock on it; None when another open holds it."""
        # O_NOFOLLOW: the file sits where a worker can write; a symlink put there is refused, not followed.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _HELD_ELSEWHERE:
                return None
            raise
        except BaseException:
            os.close(fd)
            raise
        return fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)  # closing the only descriptor of this open drops its flock
