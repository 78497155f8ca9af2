"""The verbs and flags for long runs: `rlm run --detach/--adopt`, `rlm wait`, `rlm status --watch/--all`.

`register(subparsers)` adds them to the parser cli.py builds, wrapping its
`run` and `status` verbs. Exit codes of `rlm wait`:
  0  the run finished and every task is fresh
  1  the run finished with failures (or not every task is fresh)
  3  the run is still running at the timeout
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rlm_tasks.run import detach, inflight, progress
from rlm_tasks.state import cache, status
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import ProvenanceStore

EXIT_STILL_RUNNING = 3
Verb = Callable[[argparse.Namespace], int]


def _context(args: argparse.Namespace) -> RunContext:
    return cache.load_context(args.config)  # type: ignore[no-any-return]


def _reload(ctx: RunContext) -> None:
    """Forget what this process read of provenance.json; another process is writing it."""
    ctx.store = ProvenanceStore(ctx.layout.provenance_json, ctx.plan.run_id)


def cmd_run(original: Verb, args: argparse.Namespace) -> int:
    if args.detach:
        ctx = _context(args)
        run_args = (["--adopt"] if args.adopt else []) + (["-n", str(args.jobs)] if args.jobs is not None else [])
        state = detach.start(ctx, args.config, run_args + list(args.tasks))
        print(f"rlm: run {ctx.plan.run_id} started in the background (pid {state['pid']}); "
              f"log: {state['log_path']}; `rlm wait` returns when it ends, `rlm status` shows progress")
        return 0
    if not args.adopt:
        return original(args)
    previous = os.environ.get(inflight.ADOPT_ENV)
    os.environ[inflight.ADOPT_ENV] = "1"  # read by the run reporter of this in-process doit
    try:
        return original(args)
    finally:
        if previous is None:
            os.environ.pop(inflight.ADOPT_ENV, None)
        else:
            os.environ[inflight.ADOPT_ENV] = previous


def _names(ids: list[str], limit: int = 5) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def outcome_line(ctx: RunContext) -> tuple[int, str]:
    """(exit code, one line) for a run that is not running: 0 every task fresh, 1 otherwise."""
    rows = status.collect(ctx)
    _, failed_ids = status.activity(ctx, rows)
    names = {task.id: task.doit_name for task, _ in rows}
    failed = [names[i] for i in failed_ids]
    not_fresh = [task.doit_name for task, f in rows if not f.fresh]
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
    text += f"; inventory: {ctx.layout.run_dir_rel}/reduce_state.json"
    if state.get("log_path"):
        text += f"; log: {state['log_path']}"
    return (0 if not not_fresh else 1), text


def cmd_wait(args: argparse.Namespace) -> int:
    ctx = _context(args)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while detach.run_active(ctx):
        if deadline is not None and time.monotonic() >= deadline:
            _reload(ctx)
            snap = progress.from_files(ctx)
            print(f"rlm: run {ctx.plan.run_id} still running after {args.timeout:g}s: {progress.line(snap)}; "
                  f"`rlm wait` again or `rlm status --watch`")
            return EXIT_STILL_RUNNING
        time.sleep(args.interval if deadline is None else max(0.0, min(args.interval, deadline - time.monotonic())))
    _reload(ctx)
    code, text = outcome_line(ctx)
    print(text)
    return code


def watch(ctx: RunContext, interval: float, out: TextIO) -> int:
    """Redraw the progress line from the files until no orchestrator runs the run."""
    live = bool(getattr(out, "isatty", None) and out.isatty()) and os.environ.get("TERM") != "dumb"
    last_counts: tuple[int, ...] | None = None
    while True:
        _reload(ctx)
        snap = progress.from_files(ctx)
        text = f"rlm: run {ctx.plan.run_id}: {progress.line(snap)}" + ("" if snap.active else " (not running)")
        counts = (snap.total, snap.done, snap.running, snap.failed, snap.active)
        if live:
            out.write("\r\x1b[2K" + text)
        elif counts != last_counts:  # a log file gets one line per change, not one per tick
            out.write(text + "\n")
        out.flush()
        last_counts = counts
        if not snap.active:
            if live:
                out.write("\n")
            return 0
        time.sleep(interval)


def cmd_status(original: Verb, args: argparse.Namespace) -> int:
    if not args.watch:
        return original(args)
    return watch(_context(args), args.interval, sys.stdout)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def register(sub: Any) -> None:
    """Add the long-run flags to `run` and `status`, and the `wait` verb."""
    run = sub.choices["run"]
    run.add_argument("--detach", action="store_true",
                     help="start the run in the background and return at once (pid and log under the run dir)")
    run.add_argument("--adopt", action="store_true",
                     help="wait for workers a killed orchestrator left running and accept their reports "
                          "(default: end them); same as RLM_ADOPT=1 doit")
    run.set_defaults(func=functools.partial(cmd_run, run.get_default("func")))

    st = sub.choices["status"]
    st.add_argument("--all", action="store_true", help="list every task, also in large runs")
    st.add_argument("--watch", action="store_true",
                    help="refresh done/running/failed from the files until the run ends")
    st.add_argument("--interval", type=_positive, default=2.0, metavar="SECONDS",
                    help="refresh interval of --watch (default: %(default)s)")
    st.set_defaults(func=functools.partial(cmd_status, st.get_default("func")))

    p = sub.add_parser("wait", help="wait for a running (e.g. --detach) run: exit 0 all fresh, 1 failures, "
                                    "3 still running at --timeout")
    p.add_argument("--timeout", type=_non_negative, metavar="SECONDS", help="give up waiting after this long")
    p.add_argument("--interval", type=_positive, default=0.5, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_wait)
