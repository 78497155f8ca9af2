"""What an isolated attempt keeps for a person: a change that conflicted (or whose merge a killed run began),
merged on a later run without a new worker (`resume`), or dropped by `rlm discard` (`discard`)."""

from __future__ import annotations

import shutil
import time
from typing import Any

from rlm_tasks import gitsafe
from rlm_tasks.clock import iso
from rlm_tasks.config import paths as config_paths
from rlm_tasks.config.records import TaskSpec
from rlm_tasks.run.isolation import merge, worktree
from rlm_tasks.run.isolation.attempt import CONFLICT, DISCARDED, emit
from rlm_tasks.state import events, history, reports
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import sha256_json


def _kept(ctx: RunContext, task: TaskSpec, entry: dict[str, Any]) -> str | None:
    """The worktree a conflicted attempt kept, when the record names the folder rlm made for it."""
    info = entry.get("isolation")
    attempt = entry.get("attempt")
    if entry.get("outcome") != CONFLICT or not isinstance(info, dict) or not isinstance(attempt, int):
        return None
    rel = info.get("worktree")
    return rel if rel == ctx.layout.worktree_rel(task.worker_id, attempt) else None  # whatever the record says


def discard(ctx: RunContext, task: TaskSpec) -> list[str]:
    """Every change of `task` kept after a conflict: its worktree removed, its attempt marked `discarded`
    (its patch file stays in the run's artifacts). The worktrees' folders."""
    dropped = []
    for entry in history.read(ctx.layout, task.worker_id):
        rel = _kept(ctx, task, entry)
        if rel is None:
            continue
        worktree.remove(ctx.plan.root, ctx.layout.abs(rel))
        info = {k: v for k, v in entry["isolation"].items() if k != "worktree"}
        history.record(ctx.layout, ctx.plan.run_id, task.worker_id,
                       {**entry, "outcome": DISCARDED, "isolation": {**info, "discarded_at": iso(time.time())}})
        dropped.append(rel)
    return dropped


def resume(ctx: RunContext, task: TaskSpec, digests: dict[str, Any]) -> dict[str, Any] | None:
    """The last attempt's change, merged now if it can be, without a new worker: a change kept after a conflict
    (a person resolved it, or the tree moved on), or a merge a killed run began (its journal finished at the
    run's start, or never journaled). The attempt's record, now `ok`, with its report at `report_path`; None
    when there is nothing to merge (other digests, still a conflict: the task runs a new attempt)."""
    last = history.last(ctx.layout, task.worker_id)
    info = dict(last.get("isolation") or {}) if last is not None else {}
    if last is None or not info or info.get("digests_sha256") != sha256_json(digests):
        return None
    rejected = last.get("rejected_report")
    if _kept(ctx, task, last) is not None and isinstance(rejected, str):
        source_rel = rejected
    elif last.get("outcome") == history.RUNNING and info.get("merging") is True:
        source_rel = task.report_path  # moved there before the merge began
    else:
        return None
    try:
        base, result = gitsafe.oid(info.get("base")), gitsafe.oid(info.get("result"))
        source = config_paths.confined(ctx.plan.root, source_rel, "report")
        report = config_paths.confined(ctx.plan.root, task.report_path, "report_path")
    except (gitsafe.GitError, config_paths.UnsafePath):
        return None
    if reports.problem(source, task.required_sections) is not None:
        return None
    merged = merge.merge(ctx.plan.root, base, result)
    if not merged.ok:
        return None
    emit(ctx, events.Kind.MERGE, task, int(last.get("attempt") or 0), "merged",
          f"{len(merged.changed)} file(s), kept from an earlier run: {info.get('patch')}")
    if source != report:
        report.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(report))
    kept = ctx.layout.worktree_rel(task.worker_id, int(last.get("attempt") or 0))
    if ctx.layout.abs(kept).exists():
        worktree.remove(ctx.plan.root, ctx.layout.abs(kept))
    for key in ("worktree", "conflicts", "merging"):
        info.pop(key, None)
    info["merged"] = True
    record = {k: v for k, v in last.items() if k != "rejected_report"}
    record.update(outcome="ok", isolation=info, finished_at=record.get("finished_at") or iso(time.time()))
    history.record(ctx.layout, ctx.plan.run_id, task.worker_id, record)
    return record
