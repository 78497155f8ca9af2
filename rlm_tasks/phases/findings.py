"""What a person reviewing a run looks at first: each report's title and key findings, the tasks grouped (a
fan-out is one group), every attempt from the committed attempt records, failures with causes, and deferred
opportunities with the same text merged. final.md and the HTML report both draw from here.

Everything is read from committed files (reports, artifacts/attempts/*.json), so a clone and an archive see
what the machine that ran the run saw. Report text is untrusted: callers escape it where they render it.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from rlm_tasks.config.paths import regular_file_problem
from rlm_tasks.config.records import TaskSpec
from rlm_tasks.phases import deferred as deferred_phase
from rlm_tasks.state import history, reports
from rlm_tasks.state.context import RunContext

KEY_FINDINGS = "key findings"
FINDING_LINES = 3  # lines of a report's key findings shown in final.md
FINDING_CHARS = 240
GROUP_REPORTS_SHOWN = 10  # a fan-out of 1,000 shows this many of its reports, then a count
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_READ_LIMIT = 256 * 1024  # a title and a few findings lines are near the top

# how each failed outcome of an attempt record reads, and whether a retry could help
CAUSES = {"exit": "the agent exited with an error", "timeout": "timed out", "stalled": "stalled (no progress)",
          "invalid_report": "its report was missing or invalid", "start_error": "the agent could not start",
          "interrupted": "interrupted by a signal", "running": "its orchestrator died while it ran",
          "over_cap": "went over a resource cap"}
OK_OUTCOMES = ("ok", "partial", "adopted")


class Group(NamedTuple):
    """A fan-out (every task its `foreach` generated) or one task on its own."""

    key: str  # the fan-out's name, or the task's id
    mode: str
    tasks: tuple[TaskSpec, ...]
    fanout: bool

    @property
    def label(self) -> str:
        return f"{self.mode}:{self.key}" + (f" ×{len(self.tasks)}" if self.fanout else "")


class Attempt(NamedTuple):
    task: TaskSpec
    record: dict[str, Any]  # one entry of artifacts/attempts/<worker_id>.json

    @property
    def failed(self) -> bool:
        return str(self.record.get("outcome")) not in OK_OUTCOMES

    @property
    def cause(self) -> str:
        outcome = str(self.record.get("outcome"))
        text = CAUSES.get(outcome, outcome)
        code = self.record.get("exit_code")
        if outcome == "exit" and isinstance(code, int):
            text = f"the agent exited with code {code}"
        return text


def groups(ctx: RunContext) -> list[Group]:
    """Tasks in plan order, each fan-out collapsed into one group where its first task stands."""
    members: dict[str, list[TaskSpec]] = {}
    order: list[tuple[str, str, bool]] = []
    for task in ctx.plan.tasks:
        key = task.fanout or task.id
        if key not in members or not task.fanout:
            members[key] = []
            order.append((key, task.mode, bool(task.fanout)))
        members[key].append(task)
    return [Group(key, mode, tuple(members[key]), fanout) for key, mode, fanout in order]


def link(ctx: RunContext, rel: str, anchor: str = "") -> str:
    """A Markdown link target for the repo-relative `rel`, relative to final.md's folder (works on GitHub and in a
    clone), percent-encoded so no path character ends the link early."""
    target = os.path.relpath(rel, ctx.layout.run_dir_rel)
    return urllib.parse.quote(Path(target).as_posix(), safe="/._-~") + anchor


def _read_head(path: Path) -> str | None:
    if regular_file_problem(path):
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read(_READ_LIMIT).decode("utf-8", errors="replace")
    except OSError:
        return None


class Summary(NamedTuple):
    title: str | None  # the report's first top-level heading
    findings: tuple[str, ...]  # the first lines of its Key findings section


def summary(path: Path) -> Summary:
    text = _read_head(path)
    if text is None:
        return Summary(None, ())
    found = reports.headings(text)
    title = next((t.strip() for n, t in found if text.splitlines()[n - 1].lstrip().startswith("# ")), None)
    section = deferred_phase.section(text, KEY_FINDINGS)
    lines: list[str] = []
    for line in section[1] if section else []:
        stripped = _LIST_MARK.sub("", line).strip()
        if stripped and not stripped.startswith(("```", "~~~")):
            lines.append(stripped[:FINDING_CHARS] + ("…" if len(stripped) > FINDING_CHARS else ""))
        if len(lines) == FINDING_LINES:
            break
    return Summary(title or None, tuple(lines))


def attempts(ctx: RunContext, tasks: Iterable[TaskSpec] | None = None) -> list[Attempt]:
    """Every recorded attempt of the tasks (default: all), in plan order then attempt order."""
    return [Attempt(task, record) for task in (ctx.plan.tasks if tasks is None else tasks)
            for record in history.read(ctx.layout, task.worker_id)]


def failures(ctx: RunContext, done: set[str]) -> list[dict[str, Any]]:
    """One row per task with a failed attempt: its failed attempts' causes and how the task ended."""
    rows = []
    by_task: dict[str, list[Attempt]] = {}
    for attempt in attempts(ctx):
        by_task.setdefault(attempt.task.id, []).append(attempt)
    for task in ctx.plan.tasks:
        tried = by_task.get(task.id, [])
        failed = [a for a in tried if a.failed]
        if not failed:
            continue
        last = tried[-1]
        ended = (f"done on attempt {last.record.get('attempt')}" if task.id in done and not last.failed
                 else f"not done: {last.cause}")
        rows.append({
            "task": task, "doit_name": task.doit_name, "ended": ended, "recovered": task.id in done,
            "attempts": [{"attempt": a.record.get("attempt"), "tier": a.record.get("compute_tier"),
                          "cause": a.cause, "rejected_report": a.record.get("rejected_report")} for a in failed],
        })
    return rows


def dedupe_deferred(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deferred items with the same proposal (case and spacing aside) become one item listing every source."""
    merged: dict[str, dict[str, Any]] = {}
    for item in items:
        text = item.get("proposal") or ""
        key = " ".join(str(text).split()).casefold()
        found = merged.get(key)
        if found is None:
            merged[key] = found = {**item, "sources": []}
            found.pop("source", None)
        found["sources"].append(dict(item["source"]))  # a copy: links are added to it, never to final.json
        for field in ("why_deferred", "how_to_validate"):
            if not found.get(field) and item.get(field):
                found[field] = item[field]
    return list(merged.values())


def _report_row(ctx: RunContext, task: TaskSpec, state: str) -> dict[str, Any]:
    found = summary(ctx.report_file(task))
    present = ctx.report_file(task).is_file()
    return {"worker_id": task.worker_id, "doit_name": task.doit_name, "state": state,
            "title": found.title or task.worker_id, "findings": list(found.findings),
            "report_path": task.report_path, "link": link(ctx, task.report_path) if present else None}


def _group_rows(ctx: RunContext, mode: str, states: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for group in groups(ctx):
        if group.mode != mode:
            continue
        shown = group.tasks[:GROUP_REPORTS_SHOWN] if group.fanout else group.tasks
        folders = {os.path.dirname(t.report_path) for t in group.tasks}
        counts: dict[str, int] = {}
        for task in group.tasks:
            counts[states[task.id]] = counts.get(states[task.id], 0) + 1
        rows.append({"label": group.label, "fanout": group.fanout, "size": len(group.tasks),
                     "counts": dict(sorted(counts.items())),
                     "reports": [_report_row(ctx, t, states[t.id]) for t in shown],
                     "more": len(group.tasks) - len(shown),
                     "folder_link": link(ctx, folders.pop()) + "/" if len(folders) == 1 else None})
    return rows


def _evidence_link(ctx: RunContext, rel: str) -> str | None:
    """A link for an evidence path a clone has: a file in the repository, outside the machine-local folder."""
    if rel.startswith(f"{ctx.layout.local_dir.relative_to(ctx.layout.root).as_posix()}/") or os.path.isabs(rel):
        return None
    path = ctx.layout.abs(rel)
    inside = os.path.realpath(path).startswith(os.path.realpath(ctx.layout.root) + os.sep)
    return link(ctx, rel) if inside and path.exists() else None


def review(ctx: RunContext, final: dict[str, Any], states: dict[str, str]) -> dict[str, Any]:
    """What final.md shows beyond final.json: findings and verify results by group, failures, deferred merged,
    and a relative link for every path it names that a clone has."""
    done = {tid for tid, state in states.items() if state in ("fresh", "partial")}
    items = final["deferred_opportunities"]
    merged = dedupe_deferred(items) if isinstance(items, list) else []
    for item in merged:
        for source in item["sources"]:
            source["link"] = _evidence_link(ctx, source["report_path"])
            if source["link"]:
                source["link"] += f"#L{source['line']}"
    paths = {*final["evidence_paths"], *(t.report_path for t in ctx.plan.tasks)}
    fails = failures(ctx, done)
    for row in fails:
        for attempt in row["attempts"]:
            rejected = attempt["rejected_report"]
            attempt["rejected_link"] = _evidence_link(ctx, rejected) if rejected else None
        row.pop("task")
    return {
        "findings": _group_rows(ctx, "map", states),
        "verify_results": _group_rows(ctx, "verify", states),
        "failures": fails,
        "deferred": merged,
        "links": {p: _evidence_link(ctx, p) for p in sorted(paths)},
        "worker_links": {t.worker_id: _evidence_link(ctx, t.report_path) for t in ctx.plan.tasks},
        "deferred_link": link(ctx, f"{ctx.layout.run_dir_rel}/deferred.json"),
    }
