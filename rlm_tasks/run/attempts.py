"""One task end to end: prompt → attempts (retries, tier escalation) → validated report → provenance (last).

A failed attempt (start error, non-zero exit, timeout, stall, missing or
invalid report) is retried up to `retries` times after a jittered backoff;
with `escalate` each retry runs one compute tier up. A report a failed
attempt left is moved aside, never left at report_path to look done.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, NamedTuple

from rlm_tasks import jsonio
from rlm_tasks.clock import iso
from rlm_tasks.config.defaults import TIER_ORDER
from rlm_tasks.config.records import Plan, TaskSpec, Tier
from rlm_tasks.errors import UserError
from rlm_tasks.layout import RunLayout
from rlm_tasks.render.retry import note as retry_note
from rlm_tasks.run import failfast, inflight, reportfiles, usage, worker
from rlm_tasks.run.isolation import attempt as isolated
from rlm_tasks.run.isolation import kept as isolation_kept
from rlm_tasks.run.runstate import Run
from rlm_tasks.state import budget, events, history, reports
from rlm_tasks.state import usage as usage_state
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.inflight import entry_alive
from rlm_tasks.state.provenance import sha256_file
from rlm_tasks.vocabulary import CAUSE_TEXT, Cause

MAX_BACKOFF_SECONDS = 300.0
ADOPT_POLL_SECONDS = 0.2


class TaskOutcome(NamedTuple):
    ok: bool
    message: str  # one line, names paths but never report or log contents
    attempt: int
    duration: float
    tier: str = ""
    attempts: int = 1  # attempts made by this run of the task
    interrupted: bool = False
    budget_exhausted: bool = False  # no further attempt could start: a budget is used up
    stopped: bool = False  # no further attempt could start: too many failed in a row with one cause


def progress_rel(layout: RunLayout, worker_id: str) -> str:
    """A file the worker may touch or append to; any change tells stall detection it is alive."""
    return layout.progress_rel(worker_id)


def tier_for(plan: Plan, task: TaskSpec, retry: int) -> Tier:
    """The tier of the `retry`-th retry (0: first attempt); escalation stops at the top tier."""
    name = task.compute_tier
    if task.escalate and retry and name in TIER_ORDER:
        name = TIER_ORDER[min(TIER_ORDER.index(name) + retry, len(TIER_ORDER) - 1)]
    return plan.tier(name)


def backoff_delay(base: float, retry: int, rng: random.Random | None = None) -> float:
    """base · 2^(retry-1), times a jitter in [0.5, 1.5) so retries of many tasks do not start in lockstep."""
    jitter: float = (rng or random).uniform(0.5, 1.5)
    return min(MAX_BACKOFF_SECONDS, base * 2.0 ** (retry - 1) * jitter)


def prepare(ctx: RunContext) -> None:
    """Files every worker reads: the run contract (checked once per process: it lists every task's files)."""
    if not ctx.contract_written:
        contract = reportfiles.writable(ctx, ctx.layout.abs(ctx.layout.contract_rel), "run contract")
        jsonio.write_text_if_changed(contract, ctx.contract_text)
        ctx.contract_written = True


def _record(ctx: RunContext, task: TaskSpec, report: Path, digests: dict[str, Any], tier: Tier,
            attempt: dict[str, Any], history: list[dict[str, Any]], **extra: Any) -> None:
    ctx.store.record(task.id, {
        "worker_id": task.worker_id,
        "mode": task.mode,
        "report_path": task.report_path,
        "report_sha256": sha256_file(report),
        "digests": ctx.with_own_inputs_now(task, digests),
        "compute_tier": tier.name,
        "configured_tier": task.compute_tier,
        "model": tier.model,
        "effort": tier.effort,
        "attempt": attempt["attempt"],
        "attempts": history,
        "log_path": attempt["log_path"],
        "started_at": attempt["started_at"],
        "finished_at": attempt["finished_at"],
        "exit_code": attempt["exit_code"],
        **({"isolation": attempt["isolation"]} if "isolation" in attempt else {}),
        **extra,
    })


def _attempt(run: Run, task: TaskSpec, tier: Tier, attempt: int, prompt: bytes,
             digests: dict[str, Any], report: Path) -> tuple[dict[str, Any], str | None]:
    """Run one attempt; (its record for provenance, why it failed or None)."""
    ctx, sess, layout = run.ctx, run.inflight, run.ctx.layout
    log_rel = layout.log_rel(task.worker_id, attempt)
    reportfiles.writable(ctx, layout.abs(log_rel), "log")
    reportfiles.writable(ctx, layout.abs(progress_rel(layout, task.worker_id)), "progress file")
    record: dict[str, Any] = {"attempt": attempt, "compute_tier": tier.name, "model": tier.model,
                              "effort": tier.effort, "log_path": log_rel, "exit_code": None,
                              "session": sess.orchestrator["started"]}
    try:  # with isolation: worktree, the worker's own tree comes first
        started_tree, invocation = isolated.prepare(ctx, task, tier, attempt, prompt.decode("utf-8"))
    except UserError as exc:
        now = iso(time.time())
        layout.abs(log_rel).parent.mkdir(parents=True, exist_ok=True)
        layout.abs(log_rel).write_text(f"{exc}\n", encoding="utf-8")
        outcome = isolated.start_outcome(exc)
        record.update(outcome=outcome, started_at=now, finished_at=now, detail=str(exc),
                      **({"cause": Cause.AGENT_UNAVAILABLE.value} if outcome == "start_error" else {}))
        _remember(ctx, task, record)
        _ended(ctx, task, record, str(exc))
        return record, str(exc)
    progress = layout.abs(progress_rel(layout, task.worker_id))
    progress.parent.mkdir(parents=True, exist_ok=True)
    agent_events = _beside(layout.abs(log_rel), ".events.jsonl")
    worker_usage = _beside(layout.abs(log_rel), ".worker-usage.json")
    worker_usage.unlink(missing_ok=True)  # only what this attempt writes counts
    invocation = invocation._replace(env={**invocation.env, "RLM_PROGRESS_PATH": str(progress),
                                                      "RLM_USAGE_PATH": str(worker_usage)})
    report.parent.mkdir(parents=True, exist_ok=True)

    started = False

    def on_start(pid: int, at: float, where: dict[str, Any]) -> None:
        nonlocal started
        started = True
        # not fsynced: a power loss ends the worker too, and its log (created before it started) counts the attempt
        _remember(ctx, task, {**record, "outcome": history.RUNNING, "started_at": iso(at), "finished_at": None},
                  durable=False)
        sess.attempt_started(task, attempt, tier, pid, at, digests, log_rel, where)
        events.emit(layout, events.Kind.ATTEMPT_START, worker_id=task.worker_id, attempt=attempt,
                    compute_tier=tier.name, mode=task.mode, worker_pid=pid, log_path=log_rel)

    try:
        result = isolated.run(ctx, task, started_tree, run.executor(), invocation, prompt,
                              layout.abs(log_rel), report, [progress], agent_events, worker_usage, on_start)
    finally:
        if started:
            sess.attempt_ended(task, attempt, tier.name)
    if started:
        spent = _usage(run, task, tier, attempt, invocation.events, layout.abs(log_rel))
        if spent is not None:
            record["usage"] = spent
    record.update(exit_code=result.exit_code, started_at=iso(result.started_at), finished_at=iso(result.finished_at))
    failure: str | None
    if result.error:
        outcome, failure = ("interrupted" if result.interrupted else "start_error"), result.error
    elif result.over_cap:
        outcome, failure = "over_cap", result.over_cap
    elif result.timed_out:
        outcome, failure = "timeout", f"timed out after {invocation.timeout:g}s"
    elif result.stalled:
        outcome, failure = "stalled", (f"no change to its report, progress file or log "
                                       f"for {task.stall_after:g}s")
        events.emit(layout, events.Kind.STALL, worker_id=task.worker_id, attempt=attempt, message=failure)
    elif result.exit_code != 0:
        outcome = "interrupted" if result.interrupted else "exit"
        failure = "interrupted" if result.interrupted else f"agent exited with code {result.exit_code}"
    else:
        failure, partial = reports.inspect(report, task.required_sections)
        outcome = ("ok" if failure is None and not partial else "partial" if failure is None
                   else "no_report" if failure == reports.NO_REPORT else "invalid_report")
    outcome, failure = isolated.judge(ctx, task, attempt, started_tree, outcome, failure, digests, record)
    record["outcome"] = outcome
    if failure is not None:
        cause = failfast.cause(invocation.events, agent_events, outcome)
        if cause is not None:
            record["cause"] = cause.value
            failure += f" ({CAUSE_TEXT[cause]})"
        record["detail"] = failure  # one line naming no report or log content: status and a retry's prompt show it
    if failure is not None and report.exists():
        rejected = reportfiles.rejected_rel(layout, task.worker_id, attempt)
        reportfiles.move_aside(ctx, report, layout.abs(rejected))
        record["rejected_report"] = rejected
        failure += f" (report moved to {rejected})"
    record["duration"] = round(result.duration, 3)
    # An accepted attempt's record reaches disk in its provenance entry (`attempts`), one fsynced journal line
    # shared with the tasks finishing at the same moment: this copy need not be fsynced on its own.
    _remember(ctx, task, record, durable=failure is not None)
    _ended(ctx, task, record, failure)
    return record, failure


def _ended(ctx: RunContext, task: TaskSpec, record: dict[str, Any], failure: str | None) -> None:
    events.emit(ctx.layout, events.Kind.ATTEMPT_END, worker_id=task.worker_id, attempt=record["attempt"],
                compute_tier=record["compute_tier"], mode=task.mode, outcome=record["outcome"],
                exit_code=record.get("exit_code"), duration=record.get("duration"), message=failure)


def _beside(log: Path, suffix: str) -> Path:
    """`<id>.attempt-<n>.log` → `<id>.attempt-<n><suffix>`: the events and usage files of that attempt."""
    return log.with_name(log.name[: -len(".log")] + suffix)


def _usage(run: Run, task: TaskSpec, tier: Tier, attempt: int, events_kind: str | None,
           log: Path) -> dict[str, Any] | None:
    """What the attempt cost, recorded next to its log and counted against the budget; None when unknown."""
    ctx = run.ctx
    if events_kind is not None:
        found = usage.from_events(events_kind, _beside(log, ".events.jsonl"))
    else:
        found, problem = usage.from_usage_file(_beside(log, ".worker-usage.json"))
        if problem is not None:
            with log.open("ab") as handle:  # the worker's mistake, said where the worker's output is
                handle.write(f"rlm: usage file ignored: {problem}\n".encode())
    if found is None:
        return None
    record = usage_state.attempt_record(ctx.plan, found, tier.model)
    usage_state.write_attempt(ctx, task.worker_id, attempt, tier.name, record)
    events.emit(ctx.layout, events.Kind.USAGE, worker_id=task.worker_id, attempt=attempt, compute_tier=tier.name,
                total_tokens=record["total_tokens"], cost_usd=record["cost_usd"])
    run.budget.add_usage(record)
    return record


def _remember(ctx: RunContext, task: TaskSpec, record: dict[str, Any], durable: bool = True) -> None:
    history.record(ctx.layout, ctx.plan.run_id, task.worker_id, record, durable)


def _adopt(run: Run, task: TaskSpec, entry: dict[str, Any], digests: dict[str, Any],
           report: Path) -> TaskOutcome | None:
    """Wait for a worker a dead orchestrator left running; accept its report when it validates."""
    ctx, sess = run.ctx, run.inflight
    attempt = int(entry.get("attempt") or 0)
    tier_name = str(entry.get("compute_tier") or task.compute_tier)
    sess.emit(inflight.Event("adopt", task.doit_name, attempt, tier_name))
    events.emit(ctx.layout, events.Kind.ADOPT, worker_id=task.worker_id, attempt=attempt, compute_tier=tier_name)
    started = float(entry.get("started") or time.time())
    timeout = task.agent.timeout
    while entry_alive(entry):
        overdue = timeout is not None and time.time() - started > timeout
        if worker.shutting_down() or overdue:
            worker.end_group(int(entry["pgid"]))
            break
        time.sleep(ADOPT_POLL_SECONDS)
    sess.attempt_ended(task, attempt, tier_name)
    if entry.get("digests") != digests or reports.problem(report, task.required_sections) is not None:
        return None
    try:
        tier = ctx.plan.tier(tier_name)
    except StopIteration:
        return None
    now = iso(time.time())
    record = {"attempt": attempt, "compute_tier": tier.name, "model": tier.model, "effort": tier.effort,
              "log_path": entry.get("log_path") or ctx.layout.log_rel(task.worker_id, attempt),
              "exit_code": None, "outcome": "adopted", "started_at": entry.get("started_at") or now,
              "finished_at": now}
    log = ctx.layout.abs(str(record["log_path"]))
    kind = task.agent.kind if _beside(log, ".events.jsonl").exists() else None  # what the worker wrote it to
    spent = _usage(run, task, tier, attempt, kind, log)
    if spent is not None:
        record["usage"] = spent
    _remember(ctx, task, record)
    _ended(ctx, task, record, None)
    _record(ctx, task, report, digests, tier, record, [record], adopted=True)
    return TaskOutcome(True, task.report_path, attempt, time.time() - started, tier.name, 1)


def run_task(run: Run, task: TaskSpec) -> TaskOutcome:
    if worker.shutting_down():  # dispatched as the run stops: touch nothing (the session marks it interrupted)
        return TaskOutcome(False, "interrupted", 0, 0.0, task.compute_tier, 0, True)
    ctx, sess, layout = run.ctx, run.inflight, run.ctx.layout
    report = ctx.report_file(task)
    prepare(ctx)
    prompt = ctx.prompt_text(task)
    # Not fsynced: provenance records the prompt's digest, not the file, and a run rewrites a prompt file
    # that differs; a power loss can cost this copy, never a task's freshness.
    prompt_file = reportfiles.writable(ctx, layout.abs(layout.prompt_rel(task.worker_id)), "prompt")
    jsonio.write_text_if_changed(prompt_file, prompt, durable=False)
    digests = ctx.digests(task).as_json()  # taken before the worker starts: what it was asked to do

    adopted = sess.take_adoptable(task.id)
    if adopted is not None:
        outcome = _adopt(run, task, adopted, digests, report)
        if outcome is not None:
            return outcome

    kept = isolation_kept.resume(ctx, task, digests) if task.isolation else None  # after a conflict or a kill
    if kept is not None:  # merged now, no new worker
        _record(ctx, task, report, digests, isolated.tier_named(ctx.plan, task, kept), kept, [kept])
        return TaskOutcome(True, task.report_path, int(kept["attempt"]), 0.0, str(kept["compute_tier"]), 0)
    foreign = reportfiles.foreign_report(ctx, sess, task, report)
    if foreign is not None:
        return TaskOutcome(False, foreign, 0, 0.0, task.compute_tier, 0)
    reportfiles.set_aside_previous(ctx, sess, task, report)
    tried: list[dict[str, Any]] = []
    failure = "not started"
    out_of_budget = stopped = False
    previous = history.last(layout, task.worker_id)  # a failed one is named in the next attempt's prompt
    for retry in range(task.retries + 1):
        tier = tier_for(ctx.plan, task, retry)
        if worker.shutting_down():
            break
        if retry:
            wait = backoff_delay(task.backoff_seconds, retry)
            sess.emit(inflight.Event("retry", task.doit_name, tried[-1]["attempt"] + 1, tier.name, failure, wait))
            events.emit(layout, events.Kind.RETRY, worker_id=task.worker_id, attempt=tried[-1]["attempt"],
                        compute_tier=tier.name, wait=round(wait, 3), message=failure)
            if worker.shutdown_event().wait(wait):
                break
        why_stopped = run.failures.stopped
        if why_stopped is not None:  # a task that failed already keeps its own failure; none retries
            failure, stopped = (failure, False) if tried else (why_stopped, True)
            break
        try:
            run.budget.claim(ctx, task.doit_name)
        except budget.BudgetExhausted as exc:
            failure, out_of_budget = str(exc), True
            events.emit(layout, events.Kind.BUDGET_STOP, worker_id=task.worker_id, message=failure)
            break
        # an isolated task's retry also gets the gate's or merge's own words (its `detail`)
        given = isolated.prompt_for(task, prompt + retry_note(previous), tried[-1].get("detail") if tried else None)
        record, problem = _attempt(run, task, tier, sess.next_attempt(task), given, digests, report)
        tried.append(record)
        previous = record
        run.failures.ended(record)
        if problem is None:
            _record(ctx, task, report, digests, tier, record, tried)
            duration = sum(float(r.get("duration", 0)) for r in tried)
            return TaskOutcome(True, task.report_path, record["attempt"], duration, tier.name, len(tried))
        failure = f"attempt {record['attempt']}, {record['outcome']}: {problem}; log: {record['log_path']}"
        if record["outcome"] in ("interrupted", isolated.CONFLICT):  # a conflict waits for a person
            break
    interrupted = worker.shutting_down()
    if interrupted and (not tried or tried[-1]["outcome"] == "interrupted"):
        failure = "interrupted" + (f"; log: {tried[-1]['log_path']}" if tried else "")
    # "tries", not "attempt": attempt numbers are the log files' and keep counting across runs
    tries = f" ({len(tried)} of {task.retries + 1} tries)" if task.retries and tried else ""
    last: dict[str, Any] = tried[-1] if tried else {"attempt": 0, "compute_tier": task.compute_tier}
    duration = sum(float(r.get("duration", 0)) for r in tried)
    return TaskOutcome(False, failure + tries, int(last["attempt"]), duration, str(last["compute_tier"]),
                       len(tried), interrupted, out_of_budget, stopped)
