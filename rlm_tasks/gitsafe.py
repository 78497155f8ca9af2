"""Running git safely: argv lists, checked object ids after `--end-of-options`, no hooks, no caller GIT_* state.

Every object id rlm passes to git comes from git itself, but it is checked for shape anyway (a value read
back from a journal or a committed file could have been edited), and it goes after `--end-of-options` so
that nothing shaped like an option is ever taken for one. Paths go after `--`. The caller's GIT_DIR,
GIT_INDEX_FILE, GIT_WORK_TREE and friends are dropped: git must act on the repository named by `cwd`.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from rlm_tasks.errors import UserError

OID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # sha1 or sha256 repositories
TIMEOUT = 600.0
# Hooks and the fsmonitor command are programs the repository's config names: none runs for rlm's git calls.
SAFE_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "gc.auto=0")
IDENTITY = {"GIT_AUTHOR_NAME": "rlm", "GIT_AUTHOR_EMAIL": "rlm@localhost",
            "GIT_COMMITTER_NAME": "rlm", "GIT_COMMITTER_EMAIL": "rlm@localhost"}


class GitError(UserError):
    """A git command rlm needed failed (one line: the command's verb and git's first line of error)."""


def oid(value: object) -> str:
    """`value` when it is a full object id (40 or 64 lowercase hex digits); GitError otherwise."""
    if not isinstance(value, str) or not OID.match(value):
        raise GitError(f"not a git object id: {str(value)[:80]!r}")
    return value


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(IDENTITY)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.update(extra or {})
    return env


def run(cwd: Path | str, args: Sequence[str], *, input: bytes | None = None, index: Path | None = None,
        ok_codes: Sequence[int] = (0,), timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """`git <args>` in `cwd`; GitError unless its exit code is in `ok_codes`. `index`: a GIT_INDEX_FILE."""
    extra = {"GIT_INDEX_FILE": str(index)} if index is not None else None
    argv = ["git", *SAFE_CONFIG, *args]
    try:
        done = subprocess.run(argv, cwd=cwd, input=input, capture_output=True, env=environment(extra),
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]}: {exc}") from None
    if done.returncode not in ok_codes:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed (exit {done.returncode}): {lines[0] if lines else 'no message'}")
    return done


def out(cwd: Path | str, args: Sequence[str], *, index: Path | None = None) -> str:
    """The command's stdout as text without its trailing newline."""
    return run(cwd, args, index=index).stdout.decode("utf-8", "surrogateescape").rstrip("\n")


def rev_parse(cwd: Path | str, rev: str) -> str | None:
    """The object id `rev` names (a ref name rlm chose, or HEAD), or None."""
    done = run(cwd, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], ok_codes=(0, 1))
    value = done.stdout.decode().strip()
    return oid(value) if done.returncode == 0 and value else None
