"""One isolated attempt around the worker: worktree and setup before it; patch, drift, gate and merge after.

run/attempts.py calls `start` before the worker and `finish` after it; everything an isolated attempt adds
to the attempt's record is under its `isolation` key.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from rlm_tasks import jsonio
from rlm_tasks.config import paths as config_paths
from rlm_tasks.config.isolation import Isolation
from rlm_tasks.config.records import Plan, TaskSpec, Tier
from rlm_tasks.errors import UserError
from rlm_tasks.layout import RunLayout
from rlm_tasks.render import agents
from rlm_tasks.render.agents import Invocation
from rlm_tasks.run import worker
from rlm_tasks.run.executors.base import Executor, OnStart
from rlm_tasks.run.executors.dask import DaskExecutor
from rlm_tasks.run.isolation import gate, merge, remote, worktree
from rlm_tasks.state import events, history
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import sha256_file, sha256_json

SETUP_FAILED = "setup_failed"
DRIFT = "drift"
NO_CHANGES = "no_changes"
GATE_FAILED = "gate_failed"
CONFLICT = history.CONFLICT
DISCARDED = "discarded"
OUTCOMES = (SETUP_FAILED, DRIFT, NO_CHANGES, GATE_FAILED, CONFLICT, DISCARDED)


class SetupFailed(UserError):
    """The worktree could not be made ready for the worker (not a repository, `setup:` failed)."""


class Started(NamedTuple):
    """A worktree ready for the worker; `plan` and `layout` are rooted in it (the agent's argv and env)."""

    base: str
    path: Path
    rel: str
    plan: Plan
    layout: RunLayout
    start: str | None = None  # the tree after `setup:`; its changes are not the attempt's

    def report(self, task: TaskSpec) -> Path:
        return self.path / task.report_path


def spec(task: TaskSpec) -> Isolation:
    assert task.isolation is not None
    return task.isolation


def start(ctx: RunContext, task: TaskSpec, attempt: int, prompt: str) -> Started:
    """A worktree of the main tree as it is now, with the run's files in it and `setup:` done; SetupFailed
    (the worktree removed) or GitError when it cannot be made ready."""
    started, problem = _start(ctx, task, attempt, prompt)
    if problem is not None:
        drop(ctx, started)
        raise SetupFailed(problem)
    assert started is not None
    return started


def prepare(ctx: RunContext, task: TaskSpec, tier: Tier, attempt: int,
            prompt: str) -> tuple[Started | None, Invocation]:
    """The worker's tree (None without isolation) and its invocation, built in that tree; a UserError (the
    worktree removed) when either cannot be made."""
    started = start(ctx, task, attempt, prompt) if task.isolation is not None else None
    try:
        plan, layout = (started.plan, started.layout) if started is not None else (ctx.plan, ctx.layout)
        return started, agents.build(plan, layout, task, tier, attempt)
    except UserError:
        drop(ctx, started)
        raise


def start_outcome(exc: UserError) -> str:
    """The outcome of an attempt whose worker could not start."""
    return SETUP_FAILED if isinstance(exc, SetupFailed) else "start_error"


def prompt_for(task: TaskSpec, prompt: str, failure: str | None) -> bytes:
    """What the worker gets on stdin: an isolated task's retry also hears why the last attempt failed."""
    note = retry_note(failure) if failure is not None and task.isolation is not None else ""
    return (prompt + note).encode("utf-8")


def tier_named(plan: Plan, task: TaskSpec, record: dict[str, Any]) -> Tier:
    """The tier an attempt record names, or the task's own when the plan no longer has it."""
    try:
        return plan.tier(str(record.get("compute_tier")))
    except StopIteration:
        return plan.tier(task.compute_tier)


def _start(ctx: RunContext, task: TaskSpec, attempt: int, prompt: str) -> tuple[Started | None, str | None]:
    root = ctx.plan.root
    if not worktree.is_repository(root):
        return None, f"isolation: worktree needs a git repository; {root} is not in one"
    merge.recover(root)  # a merge a killed orchestrator left: finish it before taking the snapshot
    base = worktree.snapshot(root)
    rel = ctx.layout.worktree_rel(task.worker_id, attempt)
    path = ctx.layout.abs(rel)
    if os.path.lexists(path):
        return None, f"isolation: {rel} exists already; not touched (remove it, or `rlm discard {task.id}`)"
    worktree.add(root, path, base)
    inner = RunLayout(path, ctx.plan.run_id)
    started = Started(base, path, rel, ctx.plan._replace(root=path), inner)
    # what the worker reads at the paths its environment names, inside its own tree
    for write_rel, text in ((ctx.layout.contract_rel, ctx.contract_text),
                            (ctx.layout.prompt_rel(task.worker_id), prompt)):
        target = path / write_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    (path / task.report_path).unlink(missing_ok=True)  # a report the snapshot held is not this attempt's
    problem = _copy(ctx, path) or _setup(ctx, task, attempt, path)
    if problem is None and (ctx.plan.setup.copy or ctx.plan.setup.commands):
        started = started._replace(start=worktree.staged_tree(path, task.report_path))
    return started, problem


def drop(ctx: RunContext, started: Started | None) -> None:
    """The worktree of an attempt whose worker never ran: nothing in it to keep."""
    if started is not None:
        worktree.remove(ctx.plan.root, started.path)


def _copy(ctx: RunContext, path: Path) -> str | None:
    for rel in ctx.plan.setup.copy:
        try:
            source = config_paths.confined(ctx.plan.root, rel, "setup.copy")
        except config_paths.UnsafePath as exc:
            return f"setup failed: {exc}"
        if not source.is_file() or source.is_symlink():
            return f"setup failed: setup.copy: {rel} is not a regular file of the main tree"
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return None


def _setup(ctx: RunContext, task: TaskSpec, attempt: int, path: Path) -> str | None:
    setup = ctx.plan.setup
    if not setup.commands:
        return None
    logs = ctx.layout.abs(ctx.layout.gate_logs_rel(task.worker_id, attempt))
    failed = gate.run_all(setup.commands, path, {}, setup.timeout, logs, "setup")
    if failed is None:
        return None
    return f"setup failed: {failed.command} {failed.why} (output: {_rel(ctx, failed.log)})"


def _rel(ctx: RunContext, path: Path) -> str:
    return path.relative_to(ctx.plan.root).as_posix()


def run(ctx: RunContext, task: TaskSpec, started: Started | None, executor: Executor, invocation: Invocation,
        prompt: bytes, log: Path, report: Path, watch: list[Path], agent_events: Path, usage_file: Path,
        on_start: OnStart) -> worker.AttemptResult:
    """The worker: in the main tree (no isolation), in `started`'s worktree by `executor` where it shares this
    machine's files, else through a git bundle (Dask with `filesystem: none`). An isolated worker's report is
    then moved to `report` in the main tree."""
    if started is None:
        return executor.run(invocation, prompt, log, ctx.plan.root, report, stall_after=task.stall_after,
                            watch=watch, on_start=on_start, events_path=agent_events)
    try:
        if isinstance(executor, DaskExecutor) and not executor.shared:
            return _run_remote(ctx, task, started, executor, invocation, prompt, log, agent_events, usage_file,
                               on_start)
        return executor.run(invocation, prompt, log, started.path, started.report(task),
                            stall_after=task.stall_after, watch=watch, on_start=on_start, events_path=agent_events)
    finally:
        bring_report(ctx, task, started, report)


def _run_remote(ctx: RunContext, task: TaskSpec, started: Started, executor: DaskExecutor, invocation: Invocation,
                prompt: bytes, log: Path, events: Path, usage_file: Path, on_start: OnStart) -> worker.AttemptResult:
    """The worker on a Dask worker without this machine's files; its report and change land in `started`'s
    worktree, its log, events and usage where a local attempt leaves them."""
    files = [(ctx.layout.contract_rel, ctx.contract_text.encode()),
             (ctx.layout.prompt_rel(task.worker_id), prompt)]
    for rel in ctx.plan.setup.copy:  # checked by start(): regular files of the main tree
        files.append((rel, (started.path / rel).read_bytes()))
    request = remote.Request(base=started.base, bundle=b"", files=tuple(files), setup=ctx.plan.setup.commands,
                             setup_timeout=ctx.plan.setup.timeout, report_rel=task.report_path,
                             runner_worktree=str(started.path), runner_root=str(ctx.plan.root))
    result, returned = executor.run_isolated(request, invocation, prompt, stall_after=task.stall_after,
                                             on_start=on_start)
    problem = remote.receive(returned, started.path, task.report_path, log,
                             events if invocation.events else None, usage_file)
    if problem is not None and result.error is None:
        result = result._replace(error=problem)
    return result


def bring_report(ctx: RunContext, task: TaskSpec, started: Started, report: Path) -> None:
    """The report the worker wrote in its worktree, moved to `report_path` in the main tree."""
    inner = started.report(task)
    try:  # a folder on the way the worker linked out of its worktree: that file is not its report
        config_paths.confined(started.path, task.report_path, "report_path")
    except config_paths.UnsafePath:
        return
    if not inner.is_file() or inner.is_symlink():
        return
    config_paths.confined(ctx.plan.root, task.report_path, "report_path")
    report.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(inner), str(report))


BeforeMerge = Callable[[dict[str, Any]], None]  # records the attempt as merging, with its `isolation` part


def judge(ctx: RunContext, task: TaskSpec, attempt: int, started: Started | None, outcome: str,
          failure: str | None, digests: dict[str, Any], record: dict[str, Any]) -> tuple[str, str | None]:
    """After the worker (`outcome`, `failure`: how it went) of an isolated attempt: patch, drift, gate and merge
    (`finish`), its part put in `record["isolation"]`; the attempt's outcome and failure. Unchanged without
    isolation (`started` None)."""
    if started is None:
        return outcome, failure

    def merging(info: dict[str, Any]) -> None:
        history.record(ctx.layout, ctx.plan.run_id, task.worker_id,
                       {**record, "outcome": history.RUNNING, "isolation": info})

    finished = finish(ctx, task, attempt, started, failure is None, digests, merging)
    record["isolation"] = finished.record
    if failure is None and finished.failure is not None:
        return finished.outcome or outcome, finished.failure
    return outcome, failure


class Finished(NamedTuple):
    failure: str | None  # one line, or None when the change merged
    outcome: str | None  # the attempt's outcome when not "ok"
    record: dict[str, Any]  # the attempt record's `isolation` part
    keep_worktree: bool = False


def finish(ctx: RunContext, task: TaskSpec, attempt: int, started: Started, worker_ok: bool,
           digests: dict[str, Any], before_merge: BeforeMerge | None = None) -> Finished:
    """After the worker: the patch (always saved when not empty), then, if the worker succeeded, drift,
    expects_changes, the gate and the merge. The worktree is removed unless the change is kept for a person."""
    try:
        return _finish(ctx, task, attempt, started, worker_ok, digests, before_merge)
    except UserError as exc:  # git or the merge failed: the worktree stays, nothing is lost
        return Finished(f"isolation: {exc}; worktree kept: {started.rel} (`rlm discard {task.id}` drops it)",
                        CONFLICT, {"base": started.base, "worktree": started.rel, "conflicts": [],
                                   "digests_sha256": sha256_json(digests)}, keep_worktree=True)


def _finish(ctx: RunContext, task: TaskSpec, attempt: int, started: Started, worker_ok: bool,
            digests: dict[str, Any], before_merge: BeforeMerge | None) -> Finished:
    root = ctx.plan.root
    result = worktree.result(started.path, started.base, task.report_path, started.start)
    changes = worktree.changes(root, started.base, result)
    info: dict[str, Any] = {"base": started.base, "result": result, "changed": len(changes),
                            "worktree": started.rel, "digests_sha256": sha256_json(digests)}
    if changes:
        patch_rel = ctx.layout.patch_rel(task.worker_id, attempt)
        patch_path = config_paths.confined(root, patch_rel, "patch")
        patch_path.parent.mkdir(parents=True, exist_ok=True)
        jsonio.write_bytes_atomic(patch_path, worktree.patch(root, started.base, result))
        info.update(patch=patch_rel, patch_sha256=sha256_file(patch_path))
    outcome = (_judge(ctx, task, attempt, started, changes, info, before_merge) if worker_ok
               else Finished(None, None, info))
    if not outcome.keep_worktree:
        worktree.remove(root, started.path)
        info.pop("worktree", None)
    return outcome


def _judge(ctx: RunContext, task: TaskSpec, attempt: int, started: Started, changes: list[worktree.Change],
           info: dict[str, Any], before_merge: BeforeMerge | None) -> Finished:
    settings = spec(task)
    paths = [c.path for c in changes]
    nested = worktree.unsupported(changes)
    if nested:
        return Finished(f"drift: a submodule or nested repository cannot be merged: {worktree.named(nested)}",
                        DRIFT, info)
    drifted = worktree.drift(paths, task.owns)
    if drifted:
        info["drift"] = drifted
        if settings.drift == "refuse":
            return Finished(f"drift: changed outside owns: {worktree.named(drifted)}", DRIFT, info)
    if not changes and settings.expects_changes:
        return Finished("no changes: expects_changes is set and the worktree is unchanged", NO_CHANGES, info)
    failed = _gate(ctx, task, attempt, started)
    if failed is not None and failed.why == "interrupted":
        return Finished("interrupted", "interrupted", info)
    if failed is not None:
        log = _rel(ctx, failed.log)
        info["gate"] = {"command": failed.command, "exit_code": failed.exit_code, "log": log}
        message = f"gate failed: {failed.command} {failed.why} (output: {log})"
        emit(ctx, events.Kind.GATE, task, attempt, "failed", message, exit_code=failed.exit_code, log_path=log)
        return Finished(message, GATE_FAILED, info)
    emit(ctx, events.Kind.GATE, task, attempt, "passed", None)
    if not changes:
        info["merged"] = True
        return Finished(None, None, info)
    if before_merge is not None:  # a kill from here on: the next run finishes this merge (resume)
        before_merge({**info, "merging": True})
    merged = merge.merge(ctx.plan.root, started.base, info["result"])
    if not merged.ok:
        info["conflicts"] = list(merged.conflicts)
        emit(ctx, events.Kind.MERGE, task, attempt, CONFLICT, merged.why)
        return Finished(f"{merged.why}; patch kept: {info['patch']}, worktree kept: {started.rel} "
                        f"(resolve and run again, or `rlm discard {task.id}`)", CONFLICT, info, keep_worktree=True)
    emit(ctx, events.Kind.MERGE, task, attempt, "merged", f"{len(merged.changed)} file(s): {info['patch']}")
    info["merged"] = True
    return Finished(None, None, info)


def emit(ctx: RunContext, kind: events.Kind, task: TaskSpec, attempt: int, outcome: str, message: str | None,
          **more: Any) -> None:
    events.emit(ctx.layout, kind, worker_id=task.worker_id, attempt=attempt, mode=task.mode, outcome=outcome,
                message=message, **more)


def _gate(ctx: RunContext, task: TaskSpec, attempt: int, started: Started) -> gate.Failed | None:
    settings = spec(task)
    verification = ctx.plan.contract.verification
    commands = settings.gate if settings.gate is not None else verification.commands
    if not commands:
        return None
    cwd = started.path
    env: Mapping[str, str] = {}
    if settings.gate is None:
        env = dict(verification.env)
        if verification.cwd:
            cwd = config_paths.confined(started.path, verification.cwd, "contract.verification.cwd")
    logs = ctx.layout.abs(ctx.layout.gate_logs_rel(task.worker_id, attempt))
    return gate.run_all(commands, cwd, env, settings.gate_timeout, logs, "gate")


def retry_note(failure: str) -> str:
    """What the next attempt's prompt says about the last one (a command and a path, never its output)."""
    return ("\n\n## The previous attempt failed\n"
            f"{failure}\n"
            "A path named above is a file you may read. Fix the cause; your worktree starts again from the "
            "current tree.\n")
