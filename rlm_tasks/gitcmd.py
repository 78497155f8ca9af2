"""The one way rlm runs git: argv lists, never a shell, and no value from a file can be read as an option.

Revisions and commit ids come from files a worker can write (the drift
baseline, attempt records, a Dask worker's answer), so each is checked for its
shape (a full hexadecimal object id) before use, and passed after
`--end-of-options` (git >= 2.24) so that even a value that slipped through is
a revision, never `--output=/outside/file`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from rlm_tasks.errors import UserError

TIMEOUT_SECONDS = 60
# sha1 (40) or sha256 (64) object names, lower case as git prints them
_OBJECT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class UnsafeRevision(UserError):
    """A revision read from a file is not a full object id: refused before git sees it."""


def is_object_id(value: object) -> bool:
    return isinstance(value, str) and _OBJECT_ID.fullmatch(value) is not None


def object_id(value: object, what: str) -> str:
    """`value` when it is a full object id; UnsafeRevision naming `what` (where it was read) otherwise."""
    if not is_object_id(value):
        shown = repr(value)[:80]
        raise UnsafeRevision(f"{what}: {shown} is not a commit id (40 or 64 hexadecimal digits); not passed to git")
    assert isinstance(value, str)
    return value


def run(root: Path | str, *args: str, revisions: tuple[str, ...] = (), paths: tuple[str, ...] | None = None,
        timeout: float = TIMEOUT_SECONDS) -> subprocess.CompletedProcess[bytes] | None:
    """`git -C root ARGS --end-of-options REVISIONS [-- PATHS]`; None when git is missing or timed out.

    Every element of `revisions` must be a full object id or the literal `HEAD` (UnsafeRevision otherwise);
    options go in `args`, which must never hold a value read from a file.
    """
    for rev in revisions:
        if rev != "HEAD":
            object_id(rev, "git revision")
    argv = ["git", "-C", str(root), *args]
    if revisions:
        argv += ["--end-of-options", *revisions]
    if paths is not None:
        argv += ["--", *paths]
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


def output(root: Path | str, *args: str, revisions: tuple[str, ...] = (), paths: tuple[str, ...] | None = None,
           timeout: float = TIMEOUT_SECONDS) -> bytes | None:
    """git's stdout, or None when git is missing, times out or fails (not a repository, no HEAD, ...)."""
    done = run(root, *args, revisions=revisions, paths=paths, timeout=timeout)
    return done.stdout if done is not None and done.returncode == 0 else None


def head(root: Path | str) -> str | None:
    """The commit HEAD points at, or None (not a repository, no commit yet)."""
    out = output(root, "rev-parse", "--verify", "-q", revisions=("HEAD",))
    value = out.decode("ascii", "replace").strip() if out else None
    return value if is_object_id(value) else None


def in_work_tree(root: Path | str) -> bool:
    return (output(root, "rev-parse", "--is-inside-work-tree") or b"").strip() == b"true"


class HeadWatch:
    """Tells whether `git checkout`/`git switch` moved HEAD since it was made: one read of a small file, cheap
    enough before every write of the run's committed state (a commit on the same branch does not count)."""

    def __init__(self, root: Path | str) -> None:
        gitdir = output(root, "rev-parse", "--absolute-git-dir")
        self.path = Path(gitdir.decode("utf-8", "surrogateescape").strip()) / "HEAD" if gitdir else None
        self.seen = self._read()

    def _read(self) -> bytes | None:
        if self.path is None:
            return None
        try:
            return self.path.read_bytes().strip()
        except OSError:
            return None

    def moved(self) -> str | None:
        """One line saying where HEAD went, or None while it stays."""
        if self.path is None:
            return None
        now = self._read()
        if now == self.seen:
            return None
        def shown(value: bytes | None) -> str:
            text = (value or b"nothing").decode("utf-8", "replace")
            return text.removeprefix("ref: refs/heads/")
        return f"HEAD moved during the run (from {shown(self.seen)} to {shown(now)})"
