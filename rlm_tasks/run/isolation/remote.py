"""An isolated attempt on a machine that does not share the runner's filesystem (a Dask worker).

The runner sends a git bundle of the attempt's base commit with the attempt; the remote side fetches it into a
bare cache repository under its own folder, adds a worktree, writes the run's files and `setup.copy` files
into it, runs `setup:`, runs the worker there, and returns what the runner needs: the report, the patch
(the worktree's change against the base), the log's tail, the agent's event stream and usage file. The
remote worktree is then removed (the patch carries the change). Paths in the worker's argv and environment
that named the runner's worktree or repository are rewritten to the remote ones.

The runner (run/isolation/attempt.py) applies the returned patch to its own worktree of the same base and
gates and merges there, exactly as for a local attempt.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from rlm_tasks import gitsafe, jsonio, oslock
from rlm_tasks.render.agents import Invocation
from rlm_tasks.run import worker
from rlm_tasks.run.isolation import gate, worktree
from rlm_tasks.state.reports import MAX_REPORT_BYTES

BUNDLE_REF = "refs/rlm/bundle"
MAX_RETURNED_BYTES = 64 * 1024 * 1024  # events and patch files past this are cut (the log keeps its tail)
LOG_TAIL_BYTES = worker.LOG_TAIL_BYTES
_local = threading.Lock()


class Request(NamedTuple):
    """What the runner sends with an isolated attempt."""

    base: str
    bundle: bytes
    files: tuple[tuple[str, bytes], ...]  # repo-relative path → content: the contract, the prompt, setup.copy
    setup: tuple[gate.Command, ...]
    setup_timeout: float
    report_rel: str
    runner_worktree: str  # the runner's paths, rewritten to the remote ones in argv and environment
    runner_root: str


class Returned(NamedTuple):
    report: bytes | None
    patch: bytes
    log_tail: bytes
    events: bytes | None
    usage: bytes | None
    setup_failure: str | None = None


def bundle(root: Path, base: str) -> bytes:
    """A git bundle holding `base` and its history (what a remote machine needs to check it out)."""
    ref = f"{BUNDLE_REF}/{gitsafe.oid(base)}"
    scratch = root / worktree.SCRATCH_DIR
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bundle-", dir=scratch) as tmp:
        path = Path(tmp) / "base.bundle"
        gitsafe.run(root, ["update-ref", "--end-of-options", ref, base])
        try:
            gitsafe.run(root, ["bundle", "create", "--quiet", str(path), ref])
        finally:
            gitsafe.run(root, ["update-ref", "-d", "--end-of-options", ref], ok_codes=(0, 1))
        return path.read_bytes()


RUNNER_FILES = ("RLM_PROGRESS_PATH", "RLM_USAGE_PATH")  # rlm's own files outside the worktree


def rewrite(invocation: Invocation, worktree_from: str, worktree_to: str, runner_root: str,
            scratch: str) -> Invocation:
    """The runner's worktree path, wherever argv or the environment names it, becomes the remote worktree;
    rlm's own files in the runner's repository (progress, usage) move to `scratch`. Other values (the user's
    `agent.env`) are left as written."""

    def moved(value: str, old: str, new: str) -> str:
        if value == old or value.startswith(old + os.sep):
            return new + value[len(old):]
        return value

    env = {k: moved(v, worktree_from, worktree_to) for k, v in invocation.env.items()}
    for key in RUNNER_FILES:
        if key in env:
            env[key] = moved(env[key], runner_root, scratch)
    return invocation._replace(argv=tuple(moved(a, worktree_from, worktree_to) for a in invocation.argv), env=env)


def _tail(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - limit))
            return handle.read()
    except OSError:
        return b""


def _read(path: Path, limit: int) -> bytes | None:
    try:
        if path.stat().st_size > limit:
            return None
        return path.read_bytes()
    except OSError:
        return None


def _cache_repo(folder: Path) -> Path:
    repo = folder / "repo.git"
    if not (repo / "HEAD").exists():
        folder.mkdir(parents=True, exist_ok=True)
        gitsafe.run(folder, ["init", "--quiet", "--bare", str(repo)])
    return repo


def run(request: Request, invocation: Invocation, prompt: bytes, folder: Path, name: str, *,
        stall_after: float | None, cancel: Callable[[], bool] | None,
        on_start: Callable[[int, float], None] | None) -> tuple[worker.AttemptResult, Returned]:
    """The attempt in a worktree under `folder` (a folder of this machine only). `name`: unique per attempt."""
    folder.mkdir(parents=True, exist_ok=True)
    with _local:  # one fetch at a time into the cache repository (threads here, processes by the file lock)
        lock = oslock.OsLock(folder / "repo.lock")
        lock.acquire(wait=600)
        try:
            repo = _cache_repo(folder)
            base = gitsafe.oid(request.base)
            if gitsafe.rev_parse(repo, base) is None:
                with tempfile.NamedTemporaryFile(dir=folder, suffix=".bundle") as handle:
                    handle.write(request.bundle)
                    handle.flush()
                    gitsafe.run(repo, ["fetch", "--quiet", handle.name,
                                       f"{BUNDLE_REF}/{base}:{BUNDLE_REF}/{base}"])
            tree = folder / "worktrees" / name
            worktree.add(repo, tree, base)
        finally:
            lock.release()
    scratch = folder / "attempts" / name
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        return _attempt(request, invocation, prompt, repo, tree, scratch, stall_after=stall_after, cancel=cancel,
                        on_start=on_start)
    finally:
        with _local:
            worktree.remove(repo, tree)
        shutil.rmtree(scratch, ignore_errors=True)


def _attempt(request: Request, invocation: Invocation, prompt: bytes, repo: Path, tree: Path, scratch: Path, *,
             stall_after: float | None, cancel: Callable[[], bool] | None,
             on_start: Callable[[int, float], None] | None) -> tuple[worker.AttemptResult, Returned]:
    for rel, content in request.files:
        target = tree / rel
        if ".." in Path(rel).parts or os.path.isabs(rel):
            continue  # the runner sends repository-relative paths only
        target.parent.mkdir(parents=True, exist_ok=True)
        jsonio.write_bytes_atomic(target, content, durable=False)
    (tree / request.report_rel).unlink(missing_ok=True)
    start: str | None = None
    log = scratch / "attempt.log"
    if request.setup:
        failed = gate.run_all(request.setup, tree, {}, request.setup_timeout, scratch, "setup")
        if failed is not None:
            now = time.time()
            problem = f"setup failed on the Dask worker: {failed.command} {failed.why}"
            result = worker.AttemptResult(None, False, now, now, error=problem)
            return result, Returned(None, b"", _tail(failed.log, LOG_TAIL_BYTES), None, None, problem)
    if request.files or request.setup:
        start = worktree.staged_tree(tree, request.report_rel)
    events = scratch / "attempt.events.jsonl"
    remote = rewrite(invocation, request.runner_worktree, str(tree), request.runner_root, str(scratch / "runner"))
    for key in RUNNER_FILES:
        if key in remote.env:
            Path(remote.env[key]).parent.mkdir(parents=True, exist_ok=True)
    report = tree / request.report_rel
    report.parent.mkdir(parents=True, exist_ok=True)
    result = worker.run(remote, prompt, log, tree, report, stall_after=stall_after,
                        watch=[Path(remote.env[k]) for k in ("RLM_PROGRESS_PATH",) if k in remote.env],
                        on_start=on_start, events_path=events, cancel=cancel)
    got = _read(report, MAX_REPORT_BYTES) if report.is_file() and not report.is_symlink() else None
    patch = b""
    with contextlib.suppress(gitsafe.GitError):
        made = worktree.result(tree, request.base, request.report_rel, start)
        patch = worktree.patch(repo, request.base, made)
    usage_file = remote.env.get("RLM_USAGE_PATH")
    return result, Returned(got, patch, _tail(log, LOG_TAIL_BYTES), _read(events, MAX_RETURNED_BYTES),
                            _read(Path(usage_file), 1 << 20) if usage_file else None)


def receive(returned: Returned, worktree_path: Path, report_rel: str, log: Path, events: Path | None,
            usage: Path | None) -> str | None:
    """The runner's side: the remote attempt's files written where a local attempt would have left them, its
    change applied to the runner's worktree. A problem applying it, in one line, or None."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        handle.write(returned.log_tail)
    if events is not None and returned.events is not None:
        jsonio.write_bytes_atomic(events, returned.events, durable=False)
    if usage is not None and returned.usage is not None:
        jsonio.write_bytes_atomic(usage, returned.usage, durable=False)
    if returned.report is not None:
        target = worktree_path / report_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        jsonio.write_bytes_atomic(target, returned.report, durable=False)
    if not returned.patch:
        return None
    try:
        gitsafe.run(worktree_path, ["apply", "--binary", "--whitespace=nowarn", "-"], input=returned.patch)
    except gitsafe.GitError as exc:
        return f"the change made on the Dask worker does not apply to the runner's worktree: {exc}"
    return None

