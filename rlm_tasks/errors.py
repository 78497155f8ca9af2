"""The one user-facing error type: printed as its message, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; `exit_code` is what the CLI returns for it."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
