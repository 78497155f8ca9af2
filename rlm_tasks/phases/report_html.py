"""`rlm report`: one self-contained HTML file for people reviewing a run.

The task graph and a timeline of every attempt (drawn by the page's own script from a JSON block), failures
with their causes, tokens and cost per tier and per task, and every report rendered from Markdown and
sanitised (render/markdown_safe.py). Nothing is fetched: the CSS and script are inline, and the page's
Content-Security-Policy allows no network and no script but its own (by hash), so even text that slipped
past the sanitiser could not run. It opens from a clone or an archive like any file.

It draws from the committed record (reports, artifacts/attempts/*.json, usage), so it says the same on every
machine; where this machine has the run's event log, retries, stalls, budget stops, gates and merges are
marked on the timeline too.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

from rlm_tasks import jsonio
from rlm_tasks.clock import parse_iso
from rlm_tasks.config.paths import regular_file_problem
from rlm_tasks.errors import UserError
from rlm_tasks.phases import findings, mermaid
from rlm_tasks.render import markdown_safe
from rlm_tasks.resources import TEMPLATE_DIR
from rlm_tasks.state import events, status, usage
from rlm_tasks.state.context import RunContext
from rlm_tasks.vocabulary import State

MAX_NODES = 60
REPORT_CHARS = 1_000_000  # a report is rendered up to this many characters, then cut with a note
MARKER_KINDS = ("retry", "stall", "budget_stop", "gate", "merge", "adopt")
FILE_NAME = "report.html"


def report_rel(ctx: RunContext) -> str:
    return f"{ctx.layout.run_dir_rel}/{FILE_NAME}"


def _asset(name: str) -> str:
    return (TEMPLATE_DIR / name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON that cannot end its <script> element or open a comment, whatever strings it holds."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                       ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _task_states(ctx: RunContext, found: list[findings.Attempt]) -> dict[str, str]:
    """Each task's state as `rlm status` says it, with `failed` for a missing report whose last attempt failed."""
    states = {tid: f.state.value for tid, f in status.resolve(ctx).items()}
    last: dict[str, findings.Attempt] = {}
    for attempt in found:
        last[attempt.task.id] = attempt
    return {tid: ("failed" if s == State.MISSING.value and tid in last and last[tid].failed else s)
            for tid, s in states.items()}


def _depths(ctx: RunContext) -> dict[str, int]:
    depth: dict[str, int] = {}
    by_id = {t.id: t for t in ctx.plan.tasks}
    for task in ctx.plan.tasks:
        stack = [task.id]
        while stack:  # iterative: a chain of 1,000 dependencies must not hit the recursion limit
            tid = stack[-1]
            missing = [d for d in by_id[tid].depends_on if d in by_id and d not in depth]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            depth[tid] = 1 + max((depth[d] for d in by_id[tid].depends_on if d in depth), default=-1)
    return depth


def view_data(ctx: RunContext, found: list[findings.Attempt], states: dict[str, str],
              log: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page's script draws: groups with their dependencies and depth, timeline rows, attempts, markers."""
    shown = mermaid.collapse(findings.groups(ctx), MAX_NODES)
    depth = _depths(ctx)
    group_of = {t.id: f"g{i}" for i, g in enumerate(shown) for t in g.tasks}
    groups = []
    for i, group in enumerate(shown):
        counts = Counter(states[t.id] for t in group.tasks)
        deps = sorted({group_of[d] for t in group.tasks for d in t.depends_on if d in group_of} - {f"g{i}"},
                      key=lambda g: int(g[1:]))
        groups.append({"id": f"g{i}", "label": group.label, "mode": group.mode, "size": len(group.tasks),
                       "state": mermaid.worst(counts), "deps": deps,
                       "summary": ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                       "depth": max(depth.get(t.id, 0) for t in group.tasks)})
    rows: list[dict[str, Any]] = []
    row_of: dict[str, int] = {}
    for group in shown:
        if group.fanout:
            for task in group.tasks:
                row_of[task.id] = len(rows)
            rows.append({"label": group.label, "many": True})
        else:
            row_of[group.tasks[0].id] = len(rows)
            rows.append({"label": group.tasks[0].doit_name, "many": False})
    attempts = []
    for attempt in found:
        start = _seconds(attempt.record.get("started_at"))
        end = _seconds(attempt.record.get("finished_at"))
        if start is None:
            continue
        duration = attempt.record.get("duration")  # the times are to the second; the duration is finer
        if isinstance(duration, (int, float)) and duration >= 0:
            end = start + float(duration)
        attempts.append({"task": attempt.task.doit_name, "row": row_of[attempt.task.id],
                         "attempt": attempt.record.get("attempt"), "tier": attempt.record.get("compute_tier"),
                         "outcome": attempt.record.get("outcome"), "failed": attempt.failed,
                         "start": start, "end": max(start, end if end is not None else start)})
    by_worker = {t.worker_id: t for t in ctx.plan.tasks}
    markers = []
    for event in log:
        if event["kind"] in MARKER_KINDS:
            about = by_worker.get(str(event.get("worker_id")))
            markers.append({"kind": event["kind"], "at": float(event["at"]),
                            "task": about.doit_name if about else None,
                            "row": row_of.get(about.id) if about else None,
                            "message": str(event.get("message", ""))[:300]})
    return {"groups": groups, "rows": rows, "attempts": attempts, "markers": markers}


def _seconds(text: Any) -> float | None:
    from_iso = parse_iso(text)
    return from_iso.timestamp() if from_iso is not None else None


def _report_html(ctx: RunContext, path: Path) -> str:
    if regular_file_problem(path):
        return "<p><em>no report</em></p>"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "<p><em>no report</em></p>"
    cut = len(text) > REPORT_CHARS
    body = markdown_safe.to_html(text[:REPORT_CHARS])
    return body + (f"<p><em>cut at {REPORT_CHARS:,} characters; the whole report is in the repository</em></p>"
                   if cut else "")


def _table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    cells = "".join(f'<th{" class=n" if i >= numeric_from else ""}>{_e(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i >= numeric_from else ""}>{c}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _cost_rows(entries: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    return [[name, str(t["attempts"]), f"{t['input_tokens']:,}", f"{t['output_tokens']:,}", f"{t['total_tokens']:,}",
             f"{t['cost_usd']:.4f}" + (f" (+{t['unpriced_attempts']} unpriced)" if t["unpriced_attempts"] else "")]
            for name, t in entries]


def _sections(ctx: RunContext, found: list[findings.Attempt], states: dict[str, str]) -> list[str]:
    out = []
    counts = Counter(states.values())
    decision = ctx.plan.decision
    out.append(f"<header><h1>Run {_e(ctx.plan.run_id)}</h1><p><strong>Goal:</strong> {_e(ctx.plan.goal)}</p>")
    if decision.should_finish is not None:
        out.append(f"<p><strong>Decision:</strong> {'finish' if decision.should_finish else 'iterate'}"
                   f" — {_e(decision.reason or '(no reason given)')}</p>")
    out.append("<p>" + ", ".join(f'<span class="state s-{_e(s)}">{n} {_e(s)}</span>'
                                 for s, n in sorted(counts.items())) + f" of {len(states)} tasks</p></header>")
    out.append('<nav><a href="#graph">Graph</a><a href="#timeline">Timeline</a><a href="#failures">Failures</a>'
               '<a href="#cost">Cost</a><a href="#reports">Reports</a></nav>')
    out.append('<section id="graph"><h2>Task graph</h2><p>Each fan-out is one node with its counts.</p>'
               '<div class="view" id="graph-view"></div></section>')
    out.append('<section id="timeline"><h2>Timeline of attempts</h2><p class="legend"><span>green: ok</span>'
               '<span>blue: partial</span><span>red: failed (exit, timeout, stall, invalid report)</span>'
               '<span>dots: retries, stalls, budget stops, gates, merges (from this machine\'s event log)</span></p>'
               '<div class="view" id="timeline-view"></div></section>')
    done = {tid for tid, s in states.items() if s in ("fresh", "partial")}
    fails = findings.failures(ctx, done)
    rows = [[_e(f["doit_name"]), "; ".join(f"attempt {_e(a['attempt'])} ({_e(a['tier'])}): {_e(a['cause'])}"
                                           for a in f["attempts"]), _e(f["ended"])] for f in fails]
    out.append('<section id="failures"><h2>Failures</h2>'
               + (_table(["task", "failed attempts and causes", "how it ended"], rows, 3) if rows
                  else "<p>No attempt failed.</p>") + "</section>")
    spent = usage.summary(ctx)
    head = ["", "attempts", "input tokens", "output tokens", "tokens", "cost (USD)"]
    tasks = sorted(spent["tasks"].items(), key=lambda kv: (-kv[1]["cost_usd"], -kv[1]["total_tokens"], kv[0]))
    out.append('<section id="cost"><h2>Cost and tokens</h2>'
               + (_table(["tier", *head[1:]], [[_e(r[0]), *r[1:]] for r in _cost_rows(
                   [("total", spent["total"]), *spent["by_tier"].items()])])
                  + _table(["task", *head[1:]], [[_e(r[0]), *r[1:]] for r in _cost_rows(tasks)])
                  if spent["total"]["attempts"] else "<p>No attempt reported token usage.</p>") + "</section>")
    out.append('<section id="reports"><h2>Reports</h2>')
    tried = Counter(a.task.id for a in found)
    for group in findings.groups(ctx):
        out.append(f"<h3>{_e(group.label)}</h3>")
        for task in group.tasks:
            title = findings.summary(ctx.report_file(task)).title or task.worker_id
            out.append(f'<details class="report" id="report-{_e(task.worker_id)}"><summary>{_e(title)} — '
                       f'{_e(task.doit_name)} <span class="state s-{_e(states[task.id])}">{_e(states[task.id])}'
                       f"</span> {tried[task.id]} attempt(s)</summary>"
                       f'<article class="md">{_report_html(ctx, ctx.report_file(task))}</article></details>')
    out.append("</section>")
    return out


def render(ctx: RunContext) -> str:
    found = findings.attempts(ctx)
    states = _task_states(ctx, found)
    data = view_data(ctx, found, states, events.read_all(ctx.layout))
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    policy = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:; "
              "base-uri 'none'; form-action 'none'")
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(policy)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>rlm report: {_e(ctx.plan.run_id)}</title><style>{_asset('report.css')}</style></head><body>\n",
        *_sections(ctx, found, states),
        f'\n<script type="application/json" id="rlm-data">{_script_json(data)}</script>\n',
        f"<script>{script}</script>\n</body></html>\n",
    ])


def shown_path(ctx: RunContext, path: Path) -> str:
    """Repo-relative when the file is in the repository, else as given."""
    try:
        return path.relative_to(ctx.layout.root).as_posix()
    except ValueError:
        return str(path)


def write(ctx: RunContext, output: Path | None = None) -> Path:
    """Write the report (default: report.html in the run's folder) atomically; returns where it went."""
    path = output if output is not None else ctx.layout.abs(report_rel(ctx))
    if path.is_dir():
        path = path / FILE_NAME
    text = render(ctx)
    try:
        jsonio.write_text_atomic(path, text)
    except OSError as exc:
        raise UserError(f"cannot write the report to {shown_path(ctx, path)}: {exc.strerror or exc}") from None
    return path
