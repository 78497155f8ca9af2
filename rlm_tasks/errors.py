"""The one user-facing error type: printed as its message, never as a traceback."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterable
from typing import NoReturn


class UserError(Exception):
    """A mistake the user can fix; `exit_code` is what the CLI returns for it."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def error_line(exc: UserError) -> str:
    """The one shape a user's mistake is printed in, by `rlm` and by `doit` alike.

    Configuration and usage errors (exit 2) already start with where they are (FILE:LINE:COL: ...);
    the others are prefixed with the tool's name.
    """
    return f"{exc}\n" if exc.exit_code == 2 else f"rlm: {exc}\n"


def exit_with(exc: UserError) -> NoReturn:
    """End the process with the error's one line and exit code: where doit would print a traceback."""
    sys.stderr.write(error_line(exc))
    raise SystemExit(exc.exit_code) from None


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a mistyped `word`, for a "did you mean" hint; None when none is close."""
    import difflib  # only an error needs it

    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


# errno → the resource that ran out, for the one line a resource error gets (exit 1; 3 stays "locked")
_RESOURCES = {
    "ENOSPC": "no space left on the device",
    "EDQUOT": "disk quota exceeded",
    "EMFILE": "too many open files in this process",
    "ENFILE": "too many open files on this system",
    "EAGAIN": "process limit reached (cannot start another process)",
    "ENOMEM": "out of memory",
    "ENAMETOOLONG": "a file name or path too long for the filesystem",
    "EROFS": "read-only filesystem",
    "EFBIG": "file too large for the filesystem or the file size limit",
}


class ResourceError(UserError):
    """The machine ran out of something (disk, file descriptors, processes) or a name is too long: not a bug."""


def resource_error(exc: BaseException) -> ResourceError | None:
    """The one line for an OSError about a resource, naming the resource and the path; None for other errors."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    name = errno.errorcode.get(exc.errno, "")
    what = _RESOURCES.get(name)
    if what is None:
        return None
    path = exc.filename if exc.filename is not None else None
    where = f": {path}" if path is not None else ""
    return ResourceError(f"{what}{where} ({name}); finished work is kept, run again once it is fixed")
