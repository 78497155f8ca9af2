"""Snapshot, worktree, result and patch of an isolated attempt (git plumbing only; nothing here merges).

The base of an attempt is a commit of the main working tree as it is now (tracked and untracked files, what
.gitignore ignores left out, `.rlm/local/` never), made with a temporary index: the real index, HEAD and
the branches are never touched. The attempt's result is a commit whose parent is that base and whose tree
adds the worker's changes outside `.rlm/` and its own report; the patch is the diff between the two.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from rlm_tasks import gitsafe
from rlm_tasks.config import ownership
from rlm_tasks.gitsafe import GitError
from rlm_tasks.layout import LOCAL_DIR, STATE_DIR

SCRATCH_DIR = f"{LOCAL_DIR}/tmp"  # temporary indexes: machine-local, on the repository's filesystem
GITLINK = "160000"
SYMLINK = "120000"


class Change(NamedTuple):
    status: str  # A, M, D, T (git diff-tree letters; renames are off)
    path: str
    mode: str  # the new mode ("000000" when deleted)
    blob: str  # the new blob id (all zeros when deleted)


def git_path(root: Path, name: str) -> Path:
    """A file of the repository's git directory (`index`, `objects`), as git names it for this worktree."""
    rel = gitsafe.out(root, ["rev-parse", "--git-path", name])
    return Path(rel) if os.path.isabs(rel) else root / rel


def is_repository(root: Path) -> bool:
    try:
        return gitsafe.out(root, ["rev-parse", "--show-toplevel"]) != ""
    except GitError:
        return False


def head(root: Path) -> str | None:
    return gitsafe.rev_parse(root, "HEAD")


def commit_tree(root: Path, tree: str, parents: Sequence[str], message: str) -> str:
    args = ["commit-tree", "-m", message]
    for parent in parents:
        args += ["-p", gitsafe.oid(parent)]
    return gitsafe.oid(gitsafe.out(root, [*args, "--end-of-options", gitsafe.oid(tree)]))


def tree_of(root: Path, commit: str) -> str:
    return gitsafe.oid(gitsafe.out(root, ["rev-parse", "--verify", "--end-of-options",
                                          f"{gitsafe.oid(commit)}^{{tree}}"]))


def snapshot(root: Path, parent: str | None = None, message: str = "rlm: snapshot of the working tree") -> str:
    """A commit of the main working tree now (child of `parent`, else of HEAD when there is one)."""
    scratch = root / SCRATCH_DIR
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="index-", dir=scratch) as tmp:
        index = Path(tmp) / "index"
        real = git_path(root, "index")
        if real.is_file():  # git's stat cache: only files changed since the last `git add` are read again
            shutil.copyfile(real, index)
        gitsafe.run(root, ["add", "--all", "--", ".", *_excludes(root, [LOCAL_DIR])], index=index)
        tree = gitsafe.oid(gitsafe.out(root, ["write-tree"], index=index))
    base = parent or head(root)
    return commit_tree(root, tree, [base] if base else [], message)


def add(root: Path, path: Path, commit: str) -> None:
    """A detached worktree of `commit` at `path` (a folder that does not exist yet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gitsafe.run(root, ["worktree", "add", "--detach", "--quiet", "--end-of-options", str(path),
                       gitsafe.oid(commit)])


def remove(root: Path, path: Path) -> None:
    """Remove a worktree rlm made (its files and git's record of it); a folder already gone is fine."""
    if path.exists():
        gitsafe.run(root, ["worktree", "remove", "--force", "--force", "--end-of-options", str(path)],
                    ok_codes=(0, 128))
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
    gitsafe.run(root, ["worktree", "prune"], ok_codes=(0, 128))


def _excludes(cwd: Path, paths: Sequence[str]) -> list[str]:
    """Exclude pathspecs for `paths`, except those .gitignore already ignores (`git add` refuses to be told
    about an ignored path, even to leave it out)."""
    found = gitsafe.run(cwd, ["check-ignore", "-z", "--stdin"], input="\0".join(paths).encode() + b"\0",
                        ok_codes=(0, 1)).stdout.decode("utf-8", "surrogateescape").split("\0")
    ignored = {p.rstrip("/") for p in found if p}
    return [f":(exclude,literal){p}" for p in paths if p.rstrip("/") not in ignored]


def staged_tree(worktree: Path, report_path: str) -> str:
    """The worktree's files now as a tree (in the worktree's own index), without `.rlm/` or the report."""
    gitsafe.run(worktree, ["add", "--all", "--", ".", *_excludes(worktree, [STATE_DIR, report_path])])
    return gitsafe.oid(gitsafe.out(worktree, ["write-tree"]))


def result(worktree: Path, base: str, report_path: str, start: str | None = None) -> str:
    """A commit (parent `base`) of the worktree after the worker, without `.rlm/` or the report.

    `start`: the tree after `setup:` when setup changed files; only what changed since is the attempt's.
    """
    tree = staged_tree(worktree, report_path)
    if start is not None and start != tree_of(worktree, base):
        diff = gitsafe.run(worktree, ["diff-tree", "-p", "--binary", "--full-index", "--no-renames",
                                      "--end-of-options", gitsafe.oid(start), tree]).stdout
        scratch = worktree / SCRATCH_DIR
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="index-", dir=scratch) as tmp:
            index = Path(tmp) / "index"
            gitsafe.run(worktree, ["read-tree", "--end-of-options", gitsafe.oid(base)], index=index)
            if diff:
                gitsafe.run(worktree, ["apply", "--cached", "--binary", "-"], input=diff, index=index)
            tree = gitsafe.oid(gitsafe.out(worktree, ["write-tree"], index=index))
    return commit_tree(worktree, tree, [base], "rlm: result of an attempt")


def changes(root: Path, old: str, new: str) -> list[Change]:
    """What differs between two commits (or trees), file by file, renames off."""
    raw = gitsafe.run(root, ["diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", "--end-of-options",
                             gitsafe.oid(old), gitsafe.oid(new)]).stdout
    fields = raw.split(b"\0")
    found: list[Change] = []
    i = 0
    while i + 1 < len(fields) and fields[i].startswith(b":"):
        _old_mode, new_mode, _old_blob, new_blob, status = fields[i][1:].decode().split(" ")
        found.append(Change(status[0], fields[i + 1].decode("utf-8", "surrogateescape"), new_mode, new_blob))
        i += 2
    return found


def patch(root: Path, old: str, new: str) -> bytes:
    """The change from `old` to `new` as a binary-safe patch `git apply` takes."""
    return gitsafe.run(root, ["diff", "--binary", "--full-index", "--no-renames", "--no-color", "--no-ext-diff",
                              "--no-textconv", "--end-of-options", gitsafe.oid(old), gitsafe.oid(new),
                              "--"]).stdout


def drift(paths: Iterable[str], owns: Sequence[str]) -> list[str]:
    """The changed paths no `owns:` pattern of the task matches (no `owns:`: every changed path)."""
    return sorted(p for p in paths if not any(ownership.matches(pattern, p) for pattern in owns))


def unsupported(found: Sequence[Change]) -> list[str]:
    """Changes rlm will not merge: a submodule or nested repository the worker created or changed."""
    return sorted(c.path for c in found if c.mode == GITLINK)


def named(paths: Sequence[str], limit: int = 5) -> str:
    """`a, b, c (+4 more)`: a list in one line of bounded length."""
    shown = ", ".join(paths[:limit])
    return shown + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")
