"""Drift: working-tree changes since the run started that no task owns, or that only tasks that never ran own.

When a run first takes its lock, `take_baseline` records the git HEAD and the
digest of every file that already differed from it. `report` compares today's
working tree with that baseline; files under .rlm/, rlm.yaml and the tasks'
reports are the run's own outputs and never drift. Outside git there is no
drift check, only a note saying so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlm_tasks import gitcmd, jsonio
from rlm_tasks.clock import iso, parse_iso, utc_now
from rlm_tasks.config import ownership, schema
from rlm_tasks.config import paths as config_paths
from rlm_tasks.layout import STATE_DIR
from rlm_tasks.state import budget, history
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import sha256_file

FORMAT_VERSION = 1


def baseline_rel(ctx: RunContext) -> str:
    return ctx.layout.drift_baseline_rel


_git = gitcmd.output
_in_work_tree = gitcmd.in_work_tree
_head = gitcmd.head


def _status_paths(root: Path) -> list[str]:
    """Files that differ from HEAD or are untracked, relative to `root` (which may be below the top level)."""
    prefix = (_git(root, "rev-parse", "--show-prefix") or b"").decode().strip()
    out = _git(root, "status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all", paths=(".",)) or b""
    paths = []
    for entry in out.decode("utf-8", "surrogateescape").split("\0"):
        if len(entry) > 3:
            path = entry[3:]  # porcelain paths are relative to the top level
            paths.append(path[len(prefix):] if prefix and path.startswith(prefix) else path)
    return paths


def _diff_paths(root: Path, base: str) -> list[str]:
    """Files that differ between commit `base` and the working tree (covers commits made during the run)."""
    out = _git(root, "diff", "--name-only", "-z", "--no-renames", "--relative", revisions=(base,), paths=()) or b""
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def _own_outputs(ctx: RunContext) -> set[str]:
    outputs = {t.report_path for t in ctx.plan.tasks}
    with contextlib.suppress(ValueError):  # rlm.yaml outside the repository root
        outputs.add(ctx.plan.config_path.relative_to(ctx.plan.root).as_posix())
    return outputs


def _is_own_output(path: str, outputs: set[str]) -> bool:
    return path == STATE_DIR or path.startswith(STATE_DIR + "/") or path in outputs


def _digests(root: Path, paths: Iterable[str]) -> dict[str, str | None]:
    return {p: sha256_file(root / p) for p in sorted(paths)}


def take_baseline(ctx: RunContext) -> bool:
    """Record the tree as the run starts, once per run; True when written now."""
    path = ctx.layout.abs(baseline_rel(ctx))
    if path.exists():
        return False
    root = ctx.plan.root
    git = _in_work_tree(root)
    dirty = [p for p in _status_paths(root) if not _is_own_output(p, _own_outputs(ctx))] if git else []
    jsonio.write_json(path, {
        "version": FORMAT_VERSION,
        "run_id": ctx.plan.run_id,
        "taken_at": iso(utc_now()),
        "git": git,
        "head": _head(root) if git else None,
        "dirty": _digests(root, dirty),
    })
    return True


def _read_baseline(ctx: RunContext) -> tuple[dict[str, Any] | None, str | None]:
    """(the baseline, None) when it matches its schema; (None, why not) when it is missing or does not: a worker
    can write it, and its `head` reaches git and its `dirty` paths the filesystem."""
    try:
        data = schema.read_state(ctx.layout.abs(baseline_rel(ctx)), "drift_baseline")
    except schema.StateFileInvalid as exc:
        return None, str(exc)
    if not isinstance(data, dict):
        return None, None
    bad = [p for p in data["dirty"] if not config_paths.is_plain_relative(p)]
    if bad:
        return None, f"{baseline_rel(ctx)}: dirty path {bad[0]!r} is not a plain repository path; not used"
    return data, None


def _baseline(ctx: RunContext) -> dict[str, Any] | None:
    data = _read_baseline(ctx)[0]
    return data if data is not None and data.get("git") else None


def baseline_taken_at(ctx: RunContext) -> str | None:
    data = _read_baseline(ctx)[0]
    return data.get("taken_at") if data is not None else None


def changed_since_start(ctx: RunContext) -> tuple[list[str], dict[str, Any] | None]:
    """(files changed since the baseline, the baseline or None when HEAD stood in for it)."""
    root = ctx.plan.root
    baseline = _baseline(ctx)
    head = _head(root)
    base = baseline.get("head") if baseline else head
    dirty: dict[str, str | None] = dict(baseline.get("dirty") or {}) if baseline else {}
    candidates = set(_status_paths(root)) | set(dirty)
    if base and base != head:
        candidates |= set(_diff_paths(root, base))
    outputs = _own_outputs(ctx)
    changed = []
    for path in sorted(candidates):
        if _is_own_output(path, outputs):
            continue
        if path in dirty and sha256_file(root / path) == dirty[path]:
            continue  # already changed when the run started, and untouched since
        changed.append(path)
    return changed, baseline


def report(ctx: RunContext) -> dict[str, Any]:
    """The `drift` entry of reduce_state.json (schemas/drift.schema.json)."""
    if not _in_work_tree(ctx.plan.root):
        return {"checked": False, "note": "not a git working tree: drift not checked", "since": None,
                "base_commit": None, "changed_files": 0, "unowned": [], "owned_by_tasks_not_run": [],
                "attribution": []}
    changed, baseline = changed_since_start(ctx)
    tasks = ctx.plan.tasks
    attempts = budget.attempts_by_task(ctx, logs=True)  # machine-local like drift itself: its logs count
    ran = {t.id for t in tasks if ctx.store.get(t.id) is not None or attempts.get(t.id, 0) > 0}
    unowned: list[str] = []
    idle: list[dict[str, Any]] = []
    for path in changed:
        owners = ownership.owners(tasks, path)
        if not owners:
            unowned.append(path)
        elif not ran.intersection(owners):
            idle.append({"path": path, "tasks": owners})
    attribution = attribute(ctx, [*unowned, *(entry["path"] for entry in idle)])
    notes = []
    refused = _read_baseline(ctx)[1]
    if refused:
        notes.append(refused)
    if baseline is None:
        notes.append("no baseline from the run's start: compared with HEAD")
    if not any(t.owns for t in tasks):
        notes.append("no task declares owns: every change counts as unowned")
    return {
        "checked": True,
        "note": "; ".join(notes) or None,
        "since": baseline.get("taken_at") if baseline else None,
        "base_commit": (baseline.get("head") if baseline else _head(ctx.plan.root)),
        "changed_files": len(changed),
        "unowned": unowned,
        "owned_by_tasks_not_run": idle,
        "attribution": attribution,
    }


END_SLACK_SECONDS = 1.0  # attempt records keep whole seconds (a start rounds down, so only an end needs slack)


def attribute(ctx: RunContext, paths: list[str]) -> list[dict[str, Any]]:
    """Each drifted path with the tasks whose attempt was running when it last changed (its mtime): the worker
    to ask, or the scope to trim. A deleted file has no time: `changed_at` null and no task."""
    if not paths:
        return []
    spans = _attempt_spans(ctx)
    out: list[dict[str, Any]] = []
    for path in paths:
        try:
            changed = (ctx.plan.root / path).lstat().st_mtime
        except OSError:
            out.append({"path": path, "changed_at": None, "tasks": []})
            continue
        tasks = sorted({task_id for task_id, start, end in spans
                        if start <= changed <= end + END_SLACK_SECONDS})
        out.append({"path": path, "changed_at": iso(changed), "tasks": tasks})
    return out


def _attempt_spans(ctx: RunContext) -> list[tuple[str, float, float]]:
    """(task id, start, end) of every attempt the run recorded; an attempt with no end runs until now."""
    now = time.time()
    spans = []
    for task in ctx.plan.tasks:
        for entry in history.read(ctx.layout, task.worker_id):
            start = parse_iso(entry.get("started_at"))
            if start is None:
                continue
            end = parse_iso(entry.get("finished_at"))
            spans.append((task.id, start.timestamp(), end.timestamp() if end is not None else now))
    return spans


def summary_line(entry: Any, reduce_state_rel: str) -> str | None:
    """`rlm status`'s drift line from reduce_state.json's drift entry: counts, paths and the tasks, no contents."""
    if not isinstance(entry, dict) or not entry.get("checked"):
        return None
    attribution = [a for a in entry.get("attribution") or [] if isinstance(a, dict)]
    count = len(entry.get("unowned") or []) + len(entry.get("owned_by_tasks_not_run") or [])
    if not count:
        return None
    shown = [f"{a.get('path')} ({', '.join(a.get('tasks') or []) or 'no attempt running'})"
             for a in attribution[:DRIFT_LISTED]]
    more = f" and {len(attribution) - DRIFT_LISTED} more" if len(attribution) > DRIFT_LISTED else ""
    return (f"drift: {count} file{'s' if count != 1 else ''} changed outside the tasks that ran"
            + (f": {'; '.join(shown)}{more}" if shown else "") + f"; details in {reduce_state_rel}")


DRIFT_LISTED = 5
