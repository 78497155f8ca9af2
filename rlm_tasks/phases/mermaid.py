"""final.md's two diagrams in Mermaid: the task graph and the timeline, each fan-out one node or bar.

Both stay readable at 1,000 tasks: a fan-out is one node with its counts, and when even the groups are too
many, the tasks on their own are gathered into one node per mode. Labels keep only characters Mermaid reads
as text, so an id or a fan-out name can never open a link, a style or another statement.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping

from rlm_tasks.clock import parse_iso
from rlm_tasks.phases.findings import Attempt, Group
from rlm_tasks.vocabulary import State

MAX_NODES = 40
MAX_BARS = 40  # one bar per attempt up to this many attempts, else one per group
_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,+×/()-]")
COLOURS = {
    "fresh": "fill:#d4edda,stroke:#28a745", "partial": "fill:#d1ecf1,stroke:#17a2b8",
    "stale": "fill:#fff3cd,stroke:#d39e00", "missing": "fill:#e2e3e5,stroke:#6c757d",
    "invalid": "fill:#f8d7da,stroke:#dc3545", "failed": "fill:#f8d7da,stroke:#dc3545",
    "running": "fill:#cce5ff,stroke:#007bff", "interrupted": "fill:#f8d7da,stroke:#dc3545",
}
_WORST_FIRST = ["invalid", "failed", "interrupted", "missing", "stale", "running", "partial", "fresh"]


def label(text: str, keep: str = "") -> str:
    """`text` with every character Mermaid could read as syntax replaced; `keep`: characters safe where it goes."""
    return "".join(c if c in keep or not _UNSAFE.match(c) else "_" for c in text[:80])


def collapse(groups: list[Group], limit: int = MAX_NODES) -> list[Group]:
    """`groups`, or with the tasks on their own gathered into one group per mode when there are over `limit`."""
    if len(groups) <= limit:
        return groups
    kept: list[Group] = []
    gathered: dict[str, list[Group]] = {}
    for group in groups:
        if group.fanout:
            kept.append(group)
        else:
            gathered.setdefault(group.mode, []).append(group)
    for mode, singles in gathered.items():
        tasks = tuple(t for g in singles for t in g.tasks)
        kept.append(Group("others", mode, tasks, True))  # shown as map:others with its size
    return kept


def state_counts(group: Group, states: Mapping[str, str]) -> Counter[str]:
    return Counter(states.get(t.id, State.MISSING.value) for t in group.tasks)


def worst(counts: Counter[str]) -> str:
    return next((s for s in _WORST_FIRST if counts.get(s)), "missing")


def dag(groups: list[Group], states: Mapping[str, str], failed: set[str] | None = None) -> str:
    """`graph TD` of the groups; `failed`: ids of tasks whose last attempt failed (shown as failed, not missing)."""
    shown = collapse(groups)
    node_of = {t.id: f"g{i}" for i, g in enumerate(shown) for t in g.tasks}
    failed = failed or set()
    view = {tid: ("failed" if tid in failed and s == State.MISSING.value else s) for tid, s in states.items()}
    lines = ["graph TD"]
    for i, group in enumerate(shown):
        counts = state_counts(group, view)
        if group.fanout:
            text = f"{label(group.label, ':')}<br/>" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        else:
            text = f"{label(group.label, ':')}<br/>{worst(counts)}"
        lines.append(f'  g{i}["{text}"]:::{worst(counts)}')
    edges: set[tuple[str, str]] = set()
    for group in shown:
        for task in group.tasks:
            for dep in task.depends_on:
                if dep in node_of and node_of[dep] != node_of[task.id]:
                    edges.add((node_of[dep], node_of[task.id]))
    lines += [f"  {a} --> {b}" for a, b in sorted(edges, key=lambda e: (int(e[0][1:]), int(e[1][1:])))]
    lines += [f"  classDef {name} {style}" for name, style in COLOURS.items()]
    return "\n".join(lines)


def _span(found: list[Attempt]) -> tuple[str, int] | None:
    starts = [s for a in found if (s := parse_iso(a.record.get("started_at")))]
    ends = [e for a in found if (e := parse_iso(a.record.get("finished_at")))]
    if not starts or not ends:
        return None
    seconds = max(1, math.ceil((max(ends) - min(starts)).total_seconds()))
    return min(starts).strftime("%Y-%m-%dT%H:%M:%S"), seconds


def gantt(groups: list[Group], found: list[Attempt]) -> str:
    """The timeline: one bar per attempt (failed ones marked `crit`) in small runs, else one bar per group."""
    lines = ["gantt", "  title Worker timeline (UTC)", "  dateFormat YYYY-MM-DDTHH:mm:ss", "  axisFormat %H:%M:%S"]
    per_attempt = len(found) <= MAX_BARS
    by_task: dict[str, list[Attempt]] = {}
    for attempt in found:
        by_task.setdefault(attempt.task.id, []).append(attempt)
    bar = 0
    for mode in ("map", "verify"):
        rows = []
        for group in collapse(groups):
            if group.mode != mode:
                continue
            mine = [a for t in group.tasks for a in by_task.get(t.id, [])]
            if per_attempt:
                units = [(f"{a.task.id} {a.record.get('attempt')} {a.record.get('outcome')}", [a]) for a in mine]
            else:
                failed = sum(a.failed for a in mine)
                units = [(f"{group.label} ({len(mine)} attempts, {failed} failed)", mine)]
            for name, attempts in units:
                span = _span(attempts)
                if span is None:
                    continue
                bad = any(a.failed for a in attempts) and (per_attempt or not _recovered(attempts))
                tag = "crit" if bad else "done"
                bar += 1
                rows.append(f"  {label(name)} :{tag}, b{bar}, {span[0]}, {span[1]}s")
        if rows:
            lines.append(f"  section {mode}")
            lines.extend(rows)
    return "\n".join(lines)


def _recovered(attempts: list[Attempt]) -> bool:
    """Every task of these attempts ended with a good attempt."""
    last: dict[str, Attempt] = {}
    for attempt in attempts:
        last[attempt.task.id] = attempt
    return all(not a.failed for a in last.values())
