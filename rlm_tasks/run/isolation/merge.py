"""The merge queue: an attempt's change goes into the main working tree whole or not at all, one at a time.

One merge at a time per repository (a lock in this process and the file lock `.rlm/local/locks/merge.lock`,
so two runs never merge at once). A merge touches nothing until it is known to be clean:

1. `S` = a snapshot of the main tree now, committed with the attempt's base `B` as parent; `R` (the
   attempt's result) has `B` as parent too, so `git merge-tree --write-tree S R` is the 3-way merge with
   base `B`. It writes only objects: the merged tree `T`, or the conflicting paths (then nothing changed).
2. Each path that differs between `S` and `T` is staged as a complete file (content and mode from `T`)
   under `.rlm/local/merge/staged/`. A second snapshot checks that none of those paths changed meanwhile
   (a person saving a file); if one did, the staged files go and the merge starts again.
3. The journal (the deletions and the renames, in order) is written atomically, the renames and deletions
   run, the journal is removed.

A SIGKILL before step 3's journal leaves the tree before the patch; after it, `recover` (at the next
merge, the next run's start, `rlm discard`) finishes the same renames and deletions: the tree is after the
patch. Never half.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from rlm_tasks import gitsafe, jsonio, oslock
from rlm_tasks.config import paths as config_paths
from rlm_tasks.errors import UserError
from rlm_tasks.layout import LOCAL_DIR, LOCKS_DIR
from rlm_tasks.run.isolation import worktree
from rlm_tasks.run.isolation.worktree import Change

MERGE_DIR = f"{LOCAL_DIR}/merge"
JOURNAL = f"{MERGE_DIR}/journal.json"
STAGED_DIR = f"{MERGE_DIR}/staged"
LOCK = f"{LOCKS_DIR}/merge.lock"
LOCK_WAIT_SECONDS = 3600.0
ATTEMPTS = 3  # snapshots taken again when a person changes a file the merge writes
JOURNAL_VERSION = 1

_queue = threading.Lock()


class MergeError(UserError):
    """The merge could not run (the lock, git, a path leading out of the repository)."""


class Merged(NamedTuple):
    ok: bool
    changed: tuple[str, ...] = ()  # paths written or deleted in the main tree
    conflicts: tuple[str, ...] = ()  # when not ok: the paths that conflict
    why: str = ""  # when not ok: one line


@contextlib.contextmanager
def queue(root: Path) -> Iterator[None]:
    """Hold the merge queue of the repository at `root` (this process's threads, then other processes)."""
    with _queue:
        path = root / LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = oslock.OsLock(path)
        try:
            if not lock.acquire(wait=LOCK_WAIT_SECONDS):
                raise MergeError(f"another process held {LOCK} for {LOCK_WAIT_SECONDS:g}s; nothing merged")
        except OSError as exc:
            raise MergeError(f"cannot lock {LOCK}: {oslock.why(exc)}") from None
        try:
            yield
        finally:
            lock.release()


def merge(root: Path, base: str, result: str) -> Merged:
    """Merge the attempt `base` → `result` into the main working tree at `root` (takes the queue)."""
    with queue(root):
        recover_held(root)
        moved: list[str] = []
        for _ in range(ATTEMPTS):
            outcome, moved = _merge_once(root, base, result)
            if outcome is not None:
                return outcome
        return Merged(False, conflicts=tuple(moved),
                      why=f"files changed in the working tree while merging: {worktree.named(moved)}")


def _merge_once(root: Path, base: str, result: str) -> tuple[Merged | None, list[str]]:
    ours = worktree.snapshot(root, parent=base, message="rlm: the working tree at a merge")
    done = gitsafe.run(root, ["merge-tree", "--write-tree", "-z", "--name-only", "--no-messages",
                              "--end-of-options", gitsafe.oid(ours), gitsafe.oid(result)], ok_codes=(0, 1))
    fields = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    if done.returncode == 1:
        conflicts = tuple(sorted({f for f in fields[1:] if f}))
        return Merged(False, conflicts=conflicts, why=f"conflict: {worktree.named(list(conflicts))}"), []
    merged = gitsafe.oid(fields[0].strip())
    ops = worktree.changes(root, ours, merged)
    if not ops:
        return Merged(True), []
    ours_tree = worktree.tree_of(root, ours)
    present = [c.path for c in ops if c.status == "A" and os.path.lexists(root / c.path)
               and _absent(root, ours_tree, c.path)]
    if present:  # a file the snapshot did not hold (ignored, or new since): never overwritten
        return Merged(False, conflicts=tuple(present),
                      why=f"would overwrite files not in the snapshot: {worktree.named(present)}"), []
    staged_dir = root / STAGED_DIR
    _clear(staged_dir)
    try:
        journal = _stage(root, merged, ops, staged_dir)
        again = worktree.snapshot(root, parent=base, message="rlm: the working tree at a merge")
        touched = {c.path for c in ops}
        moved = sorted(c.path for c in worktree.changes(root, ours, again) if c.path in touched)
        if moved:
            return None, moved
        with _signals_held():  # from the journal on, a Ctrl-C waits until every file is in place
            jsonio.write_json(root / JOURNAL, journal)
            _apply(root, journal)
    except BaseException:
        if not (root / JOURNAL).exists():
            _clear(staged_dir)
        raise
    return Merged(True, changed=tuple(c.path for c in ops)), []


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then reach the handlers the run had. Python runs signal
    handlers in the main thread only, so only a merge there can be interrupted; the handlers are swapped (a
    signal mask would not do: another thread of the process may take the signal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for signum in caught:
            signal.raise_signal(signum)


def _absent(root: Path, tree: str, path: str) -> bool:
    done = gitsafe.run(root, ["cat-file", "-e", "--end-of-options", f"{gitsafe.oid(tree)}:{path}"],
                       ok_codes=(0, 1, 128))
    return done.returncode != 0


def _clear(folder: Path) -> None:
    if folder.exists() or folder.is_symlink():
        if folder.is_symlink() or not folder.is_dir():
            folder.unlink()
        else:
            shutil.rmtree(folder)


def _target(root: Path, rel: str) -> Path:
    """`rel` in the main tree, its directories checked now: none may lead out of the repository."""
    parent = os.path.dirname(rel)
    if parent:
        config_paths.confined(root, parent, "merged path")
    return root / rel


def _stage(root: Path, tree: str, ops: Sequence[Change], staged_dir: Path) -> dict[str, Any]:
    """Every new file written complete under `staged_dir`; the journal that puts them in place."""
    staged_dir.mkdir(parents=True, exist_ok=True)
    umask = jsonio.UMASK
    steps: list[dict[str, Any]] = []
    files: list[tuple[Change, Path]] = []
    for n, change in enumerate(sorted(ops, key=lambda c: (c.status != "D", c.path))):
        _target(root, change.path)
        if change.status == "D":
            steps.append({"path": change.path, "staged": None})
            continue
        staged = staged_dir / str(n)
        if change.mode == worktree.SYMLINK:
            link = gitsafe.run(root, ["cat-file", "blob", "--end-of-options", gitsafe.oid(change.blob)]).stdout
            os.symlink(os.fsdecode(link), staged)
        elif change.mode in ("100644", "100755"):
            files.append((change, staged))
        else:
            raise MergeError(f"cannot merge {change.path}: git mode {change.mode} (a submodule?)")
        steps.append({"path": change.path, "staged": staged.relative_to(root).as_posix()})
    _write_blobs(root, files)
    for change, staged in files:
        staged.chmod((0o777 if change.mode == "100755" else 0o666) & ~umask)
    return {"version": JOURNAL_VERSION, "tree": tree, "steps": steps}


def _write_blobs(root: Path, files: Sequence[tuple[Change, Path]]) -> None:
    """Each blob, through the repository's checkout filters for its path (as `git checkout` would write it),
    into its staged file and onto the disk. One `git cat-file --batch` for all (a path with a newline, which
    the batch's line format cannot carry, gets a call of its own)."""
    batch = [(c, p) for c, p in files if "\n" not in c.path]
    for change, staged in files:
        if "\n" in change.path:
            staged.write_bytes(gitsafe.run(root, ["cat-file", "--filters", f"--path={change.path}",
                                                  "--end-of-options", gitsafe.oid(change.blob)]).stdout)
            _sync(staged)
    if not batch:
        return
    lines = "".join(f"{gitsafe.oid(c.blob)} {c.path}\n" for c, _ in batch).encode("utf-8", "surrogateescape")
    with tempfile.TemporaryFile() as request:
        request.write(lines)
        request.seek(0)
        proc = subprocess.Popen(["git", *gitsafe.SAFE_CONFIG, "cat-file", "--batch", "--filters"], cwd=root,
                                stdin=request, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=gitsafe.environment())
        assert proc.stdout is not None
        try:
            for change, staged in batch:
                header = proc.stdout.readline().split()
                if len(header) != 3 or header[1] != b"blob":
                    raise MergeError(f"cannot read {change.path} from git (blob {change.blob})")
                left = int(header[2])
                with staged.open("wb") as out:
                    while left:
                        chunk = proc.stdout.read(min(left, 1 << 20))
                        if not chunk:
                            raise MergeError(f"cannot read {change.path} from git: output ended early")
                        out.write(chunk)
                        left -= len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                proc.stdout.read(1)  # the newline after each object
        finally:
            proc.stdout.close()
            proc.kill()
            proc.wait()


def _sync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _checked_steps(journal: dict[str, Any]) -> list[dict[str, Any]]:
    """The journal's steps, each a relative path of the tree and, for a new file, a file of the staging folder;
    MergeError naming the journal when one is not (a journal is only ever written by `_stage`)."""
    steps = journal.get("steps")
    good = isinstance(steps, list)
    for step in steps if isinstance(steps, list) else []:
        path, staged = (step.get("path"), step.get("staged")) if isinstance(step, dict) else (None, None)
        good = good and isinstance(path, str) and bool(path) and not os.path.isabs(path) \
            and ".." not in path.split("/") and path.split("/")[0] not in (".git", ".rlm") \
            and (staged is None or (isinstance(staged, str) and staged.startswith(f"{STAGED_DIR}/")
                                    and ".." not in staged.split("/")))
    if not good or not isinstance(steps, list):
        raise MergeError(f"{JOURNAL} is damaged; nothing was applied from it (look at it, then remove it)")
    return steps


def _apply(root: Path, journal: dict[str, Any]) -> None:
    """Do every step of the journal (each one again when it was already done), then drop the journal."""
    steps = _checked_steps(journal)
    emptied: set[Path] = set()
    for step in steps:
        if step.get("staged") is None:
            target = _target(root, step["path"])
            if (os.path.lexists(target) and not target.is_dir()) or target.is_symlink():
                target.unlink()
            emptied.add(target.parent)
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        _prune(root, folder)
    for step in steps:
        staged = step.get("staged")
        if not isinstance(staged, str):
            continue
        source = root / staged
        if not os.path.lexists(source):
            continue  # already in place
        target = _target(root, step["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            _prune(root, target)  # a folder that became a file: its files were deleted above
        os.replace(source, target)
    (root / JOURNAL).unlink(missing_ok=True)
    _clear(root / STAGED_DIR)


def _prune(root: Path, folder: Path) -> None:
    """Remove empty folders from `folder` up (git does the same when a folder's last file goes)."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def pending(root: Path) -> bool:
    """A merge was cut short (its journal is there): the next `recover` finishes it."""
    return (root / JOURNAL).exists()


def recover_held(root: Path) -> bool:
    """With the queue held: finish a merge a killed process left (True), drop half-staged files."""
    try:
        journal = jsonio.read_json(root / JOURNAL)
    except (ValueError, OSError):
        journal = {}
    if journal is None:
        _clear(root / STAGED_DIR)  # staged by a process killed before its journal: the tree was not touched
        return False
    if not isinstance(journal, dict) or journal.get("version") != JOURNAL_VERSION:
        raise MergeError(f"{JOURNAL} is damaged; nothing was applied from it (look at it, then remove it)")
    _apply(root, journal)
    return True


def recover(root: Path) -> bool:
    """Finish a merge a killed process left, if any; True when one was finished."""
    if not pending(root) and not (root / STAGED_DIR).exists():
        return False
    with queue(root):
        return recover_held(root)
