"""One task end to end: prompt → worker → validated report → provenance (written last)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import agents, jsonio, reports, worker
from .config import TaskSpec
from .context import RunContext
from .errors import UserError
from .provenance import sha256_file


@dataclass(frozen=True)
class TaskOutcome:
    ok: bool
    message: str  # one line, names paths but never report or log contents
    attempt: int
    duration: float


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def next_attempt(ctx: RunContext, task: TaskSpec) -> int:
    logs = ctx.layout.abs(ctx.layout.log_rel(task.worker_id, 1)).parent
    prefix = f"{task.worker_id}.attempt-"
    numbers = [0]
    if logs.is_dir():
        for name in os.listdir(logs):
            if name.startswith(prefix) and name.endswith(".log"):
                middle = name[len(prefix):-len(".log")]
                if middle.isdigit():
                    numbers.append(int(middle))
    return max(numbers) + 1


def _move_aside(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dest))


def prepare(ctx: RunContext) -> None:
    """Files every worker reads: the run contract."""
    jsonio.write_text_if_changed(ctx.layout.abs(ctx.layout.contract_rel), ctx.contract_text)


def run_task(ctx: RunContext, task: TaskSpec) -> TaskOutcome:
    layout = ctx.layout
    attempt = next_attempt(ctx, task)
    log_rel = layout.log_rel(task.worker_id, attempt)
    report = ctx.report_file(task)
    prepare(ctx)
    prompt = ctx.prompt_text(task)
    jsonio.write_text_if_changed(layout.abs(layout.prompt_rel(task.worker_id)), prompt)
    digests = ctx.digests(task)  # taken before the worker starts: what it was asked to do
    tier = ctx.plan.tier(task.compute_tier)

    # An old report must not make a failed worker look done: drop the marker, keep the file in history.
    ctx.store.forget(task.id)
    if report.exists():
        _move_aside(report, layout.abs(f"{layout.artifacts_rel}/history/{task.worker_id}/{attempt}.md"))

    try:
        invocation = agents.build(ctx.plan, layout, task, tier, attempt)
    except UserError as exc:
        return TaskOutcome(False, str(exc), attempt, 0.0)
    report.parent.mkdir(parents=True, exist_ok=True)
    result = worker.run(invocation, prompt.encode("utf-8"), layout.abs(log_rel), ctx.plan.root, report)

    if result.error:
        failure: str | None = result.error
    elif result.timed_out:
        failure = f"timed out after {invocation.timeout:g}s"
    elif result.exit_code != 0:
        failure = f"agent exited with code {result.exit_code}"
    else:
        failure = reports.problem(report, task.required_sections)
    if failure is not None:
        if report.exists():
            rejected = f"{layout.artifacts_rel}/reports/{task.worker_id}.attempt-{attempt}.rejected.md"
            _move_aside(report, layout.abs(rejected))
            failure += f" (report moved to {rejected})"
        return TaskOutcome(False, f"{failure}; log: {log_rel}", attempt, result.duration)

    ctx.store.record(task.id, {
        "worker_id": task.worker_id,
        "mode": task.mode,
        "report_path": task.report_path,
        "report_sha256": sha256_file(report),
        "digests": digests.as_json(),
        "compute_tier": tier.name,
        "model": tier.model,
        "effort": tier.effort,
        "attempt": attempt,
        "log_path": log_rel,
        "started_at": iso(result.started_at),
        "finished_at": iso(result.finished_at),
        "exit_code": result.exit_code,
    })
    return TaskOutcome(True, task.report_path, attempt, result.duration)
