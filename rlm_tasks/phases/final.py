"""DECIDE's outputs: final.json and final.md, refused until MAP and VERIFY are done and the decision is written.

final.json records the digests of what it summarised (plan.json, the decision,
every report), so `rlm status`, `rlm check` and `rlm archive` can tell when it
is out of date. A used-up budget is a terminal state: final is written next to
the user's decision (`budget_exhausted`), never instead of it.
"""

from __future__ import annotations

from typing import Any

from rlm_tasks import jsonio
from rlm_tasks.config.advisories import evidence_problems
from rlm_tasks.config.records import ConfigError
from rlm_tasks.errors import UserError
from rlm_tasks.phases import findings, mermaid, reduce
from rlm_tasks.render import escape, jinja
from rlm_tasks.state import planfile, reports, status, usage
from rlm_tasks.state.budget import BudgetUse, budget_use
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import sha256_file, sha256_json
from rlm_tasks.vocabulary import State

FORMAT_VERSION = 1
CURRENT_MARK = "final_current"  # the cache's mark: final.json found current, and the files it rested on
NONE_IDENTIFIED = "none identified"
BUDGET_EXHAUSTED = "budget exhausted"


class FinalRefused(UserError):
    """final.json cannot be written yet; the message says what is missing."""


def final_json_path(ctx: RunContext) -> str:
    return f"{ctx.layout.run_dir_rel}/final.json"


def final_md_path(ctx: RunContext) -> str:
    return f"{ctx.layout.run_dir_rel}/final.md"


def _preconditions(ctx: RunContext, use: BudgetUse) -> list[str]:
    problems = []
    if not any(t.mode == "verify" for t in ctx.plan.tasks):
        problems.append("VERIFY is mandatory: the plan has no verify task; add one under 'verify:' and run doit")
    states = status.resolve(ctx)
    exhausted = use.exhausted(ctx) is not None
    for task in ctx.plan.tasks:  # every map report too: a verify report of stale findings verifies nothing
        found = states[task.id]
        if found.state not in status.DONE and not exhausted:  # a used-up budget ends the run where it stands
            why = status.why(found)
            problems.append(f"{task.mode} report of {task.doit_name} is {found.state.value}"
                            + (f" ({why})" if why else "") + ": run doit first")
    if ctx.plan.decision.should_finish is None and not exhausted:
        problems.append("no decision: write `decision: {should_finish, reason, conclusions}` in rlm.yaml")
    return problems


def decision_record(ctx: RunContext) -> dict[str, Any]:
    decision = ctx.plan.decision
    record: dict[str, Any] = {
        "should_finish": decision.should_finish, "reason": decision.reason,
        "conclusions": [{"text": c.text, "evidence": list(c.evidence)} for c in decision.conclusions]}
    if decision.deviations:  # only then: a decision without them keeps the digest it had
        record["deviations"] = deviations(ctx)
    return record


def deviations(ctx: RunContext) -> list[dict[str, str]]:
    return [{"what": d.what, "why": d.why, "repair": d.repair} for d in ctx.plan.decision.deviations]


def digests(ctx: RunContext) -> dict[str, Any]:
    """What final.json summarises, as sha256 digests: plan.json, the decision block, every report."""
    return {
        "plan": sha256_file(ctx.layout.plan_json),
        "decision": sha256_json(decision_record(ctx)),
        "reports": {t.report_path: sha256_file(ctx.report_file(t)) for t in ctx.plan.tasks},
    }


def out_of_date(ctx: RunContext) -> list[str] | None:
    """What changed since final.json was written ([] when it is current); None when there is no final.json.

    Once found current it stays so, without reading a report, while final.json, plan.json and every report
    keep their stat signatures (the cache's marks are dropped with any change to rlm.yaml or the templates).
    """
    files = [str(ctx.layout.abs(final_json_path(ctx))), str(ctx.layout.plan_json), *ctx.report_files_abs]
    if ctx.cache is not None and ctx.cache.mark_holds(CURRENT_MARK, files):
        return []
    changed = _out_of_date(ctx)
    if changed == [] and ctx.cache is not None:
        ctx.cache.set_mark(CURRENT_MARK, files)
    return changed


def _out_of_date(ctx: RunContext) -> list[str] | None:
    try:
        recorded = jsonio.read_json(ctx.layout.abs(final_json_path(ctx)))
    except ValueError:
        return ["final.json is not valid JSON"]
    if recorded is None:
        return None
    before = recorded.get("digests") if isinstance(recorded, dict) else None
    if not isinstance(before, dict):
        return ["final.json records no digests"]
    now = digests(ctx)
    changed = [f"{key} changed" for key in ("plan", "decision") if before.get(key) != now[key]]
    recorded_reports = before.get("reports")
    old_reports: dict[str, Any] = recorded_reports if isinstance(recorded_reports, dict) else {}
    paths = sorted(p for p in set(old_reports) | set(now["reports"]) if old_reports.get(p) != now["reports"].get(p))
    if paths:
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        changed.append(f"reports changed: {', '.join(paths[:3])}{more}")
    # plan.json is rewritten only when doit runs: an rlm.yaml edited since is a changed plan too
    if "plan changed" not in changed and ctx.layout.plan_json.exists() and not planfile.is_current(ctx):
        changed.append("rlm.yaml changed since plan.json")
    return changed


def out_of_date_line(ctx: RunContext) -> str | None:
    """One line for status/check when final.json exists but no longer matches what it summarised."""
    changed = out_of_date(ctx)
    if not changed:
        return None
    return f"final: {final_json_path(ctx)} is out of date ({'; '.join(changed)}): run `doit final` again"


def build(ctx: RunContext) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(final.json, reduce_state, deferred) — reduce and deferred are refreshed first."""
    missing_evidence = evidence_problems(ctx.plan)
    if missing_evidence:  # a mistake in rlm.yaml: FILE:LINE:COL lines, exit 2
        raise ConfigError(missing_evidence)
    state, _ = reduce.write_reduce_state(ctx)
    deferred = reduce.write_deferred(ctx)
    use = budget_use(ctx)
    problems = _preconditions(ctx, use)
    if problems:
        raise FinalRefused("final refused: " + "; ".join(problems))
    decision = ctx.plan.decision
    exhausted = use.exhausted(ctx)
    should_finish = bool(decision.should_finish)
    evidence = [t.report_path for t in ctx.plan.tasks]
    for conclusion in decision.conclusions:
        evidence.extend(p for p in conclusion.evidence if p not in evidence)
    items = deferred["items"]
    spent = usage.summary(ctx)
    states = status.resolve(ctx)
    unfinished = [t for t in ctx.plan.tasks if states[t.id].state not in status.DONE]
    # the budget ended the run: said next to the decision when it overrides "iterate" or left tasks undone
    ended_by_budget = exhausted is not None and (not should_finish or bool(unfinished))
    final = {
        "version": FORMAT_VERSION,
        "run_id": ctx.plan.run_id,
        "iteration": use.iterations,
        "goal_summary": ctx.plan.goal,
        "termination_decision": {
            "should_finish": should_finish,  # the user's decision, also when the budget ends the run
            "reason": decision.reason or "",
            "budget_exhausted": f"{BUDGET_EXHAUSTED}: {exhausted}" if ended_by_budget else None,
            "terminal": should_finish or exhausted is not None,
            "budget_used": {"iterations": use.iterations, "workers": use.workers, "attempts": use.attempts,
                            "tokens": use.tokens, "cost_usd": round(use.cost_usd, 6)},
        },
        "usage": {key: spent[key] for key in ("total", "by_tier", "top_tasks")},
        "conclusions": [{"text": c.text, "evidence": list(c.evidence)} for c in decision.conclusions],
        "deviations": deviations(ctx),  # the orchestrator's own departures from the workflow
        "evidence_paths": evidence,
        "unfinished_tasks": [{"id": t.id, "doit_name": t.doit_name, "state": states[t.id].state.value,
                              "report_path": t.report_path} for t in unfinished],
        "partial_reports": [{"id": t.id, "report_path": t.report_path,
                             "next_plan_path": reports.next_plan_path(t.report_path),
                             "accepted": t.accept_partial}
                            for t in ctx.plan.tasks if states[t.id].state is State.PARTIAL],
        "deferred_opportunities": [{k: i[k] for k in ("proposal", "why_deferred", "how_to_validate", "source")}
                                   for i in items] or NONE_IDENTIFIED,
        "reduce_state_path": reduce.reduce_state_path(ctx),
        "deferred_path": reduce.deferred_path(ctx),
        "digests": digests(ctx),
    }
    return final, state, deferred


def write(ctx: RunContext) -> dict[str, Any]:
    final, state, _ = build(ctx)
    states = {row["id"]: row["state"] for row in state["tasks"]}
    groups = findings.groups(ctx)
    attempts = findings.attempts(ctx)
    failed_last = {a.task.id for a in attempts if a.failed} - {a.task.id for a in attempts if not a.failed}
    text = jinja.render_final(ctx.plan, {
        "final": final,
        "reduce_state": state,
        "review": findings.review(ctx, final, states),
        "mermaid_dag": mermaid.dag(groups, states, failed_last),
        "mermaid_gantt": mermaid.gantt(groups, attempts),
        "none_identified": NONE_IDENTIFIED,
    })
    jsonio.write_json(ctx.layout.abs(final_json_path(ctx)), final)
    jsonio.write_text_atomic(ctx.layout.abs(final_md_path(ctx)), text)
    return final


def summary_line(ctx: RunContext, final: dict[str, Any]) -> str:
    """What `rlm final` and `doit final` print: the verdict, its reason and the two paths."""
    decision = final["termination_decision"]
    verdict = "finish" if decision["should_finish"] else "iterate"
    if decision.get("budget_exhausted"):
        verdict += f", but {decision['budget_exhausted']}: the run ends here"
        if final.get("unfinished_tasks"):
            verdict += f" with {len(final['unfinished_tasks'])} task(s) not done"
    reason = escape.one_line(decision["reason"]) if decision["reason"] else "no reason given"
    return (f"final: {verdict} ({reason}): "
            f"{final_json_path(ctx)}, {final_md_path(ctx)}")
