"""`rlm wait [--timeout S]`: wait for a running (e.g. detached) run, then say how it ended."""

from __future__ import annotations

import argparse
import time

from rlm_tasks.cli.common import context, non_negative, positive
from rlm_tasks.lifecycle.runlock import LOCKED_EXIT_CODE
from rlm_tasks.phases import reduce
from rlm_tasks.run import detach
from rlm_tasks.state import inflight, progress, status
from rlm_tasks.state.context import RunContext

HELP = "wait for a running (e.g. --detach) run: exit 0 all fresh, 1 failures, 3 still running at --timeout"
EXIT_STILL_RUNNING = LOCKED_EXIT_CODE  # the same "busy, try later" code as a locked run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=non_negative, metavar="SECONDS", help="give up waiting after this long")
    parser.add_argument("--interval", type=positive, default=0.5, help=argparse.SUPPRESS)


def wait(args: argparse.Namespace) -> int:
    ctx = context(args)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while detach.run_active(ctx):
        if deadline is not None and time.monotonic() >= deadline:
            ctx.reload_provenance()
            snap = progress.from_files(ctx)
            print(f"rlm: run {ctx.plan.run_id} still running after {args.timeout:g}s: {progress.line(snap)}; "
                  f"`rlm wait` again or `rlm status --watch`; rlm wait exits {EXIT_STILL_RUNNING}")
            return EXIT_STILL_RUNNING
        time.sleep(args.interval if deadline is None else max(0.0, min(args.interval, deadline - time.monotonic())))
    ctx.reload_provenance()
    reduce.refresh(ctx)
    ctx.save_cache()
    code, text = outcome_line(ctx)
    print(text)
    return code


def _names(ids: list[str], limit: int = 5) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def outcome_line(ctx: RunContext) -> tuple[int, str]:
    """(exit code, one line) for a run that is not running: 0 every task fresh, 1 otherwise."""
    rows = status.collect(ctx)
    _, failed_ids = status.activity(ctx, rows)
    names = {task.id: task.doit_name for task, _ in rows}
    since = progress.orchestrator_started(inflight.read(ctx.layout))  # this run's failures, not earlier ones
    failed = [names[i] for i in progress.failed_since(ctx, set(failed_ids), since)]
    not_fresh = [task.doit_name for task, f in rows if not status.accepted(task, f)]  # as `rlm check` counts
    state = detach.read_state(ctx.layout.abs(detach.state_rel(ctx)))
    if state.get("exit_code") is not None:
        exit_note = f" (exit {state['exit_code']})"
    elif state.get("pid") is not None:
        exit_note = " (the background process ended without an exit code: killed?)"
    else:
        exit_note = ""
    fresh = len(rows) - len(not_fresh)
    text = f"rlm: run {ctx.plan.run_id} finished{exit_note}: {fresh}/{len(rows)} fresh"
    if failed:
        text += f", {len(failed)} failed: {_names(failed)}"
    others = len(not_fresh) - len(failed)
    if others:
        text += f", {others} not fresh (rlm status)"
    text += f"; inventory: {ctx.layout.reduce_state_rel}"
    if state.get("log_path"):
        text += f"; log: {state['log_path']}"
    code = 0 if not not_fresh else 1
    return code, f"{text}; rlm wait exits {code}"
