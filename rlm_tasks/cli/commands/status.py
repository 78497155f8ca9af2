"""`rlm status [--json|--all|--watch]`: each task's state and why; --watch follows a running run."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO

from rlm_tasks import jsonio
from rlm_tasks.cli.common import context, positive
from rlm_tasks.lifecycle import reopen
from rlm_tasks.phases import final, reduce
from rlm_tasks.state import drift, progress
from rlm_tasks.state import status as task_status
from rlm_tasks.state.context import RunContext

HELP = "each task's state (fresh/stale/missing/invalid) and why"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output (schemas/status.schema.json)")
    parser.add_argument("--all", action="store_true", help="list every task, also in large runs")
    parser.add_argument("--watch", action="store_true",
                        help="refresh done/running/failed from the files until the run ends")
    parser.add_argument("--interval", type=positive, default=2.0, metavar="SECONDS",
                        help="refresh interval of --watch (default: %(default)s)")


def status(args: argparse.Namespace) -> int:
    ctx = context(args)
    if args.watch:
        return watch(ctx, args.interval, sys.stdout)
    rows = task_status.collect(ctx)
    changed = final.out_of_date(ctx)
    reduce.refresh(ctx)  # the inventory an orchestrator reads next is never older than what this shows
    ctx.save_cache()
    if args.json:
        data = task_status.as_json(ctx, rows)
        data["drift"] = _last_drift(ctx)
        data["final"] = {"path": final.final_json_path(ctx), "changed": changed or [],
                         "state": "missing" if changed is None else "out_of_date" if changed else "current"}
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    print(task_status.summary_line(ctx, rows))
    before = [reopen.finished_line(ctx), task_status.usage_line(ctx), task_status.activity_line(ctx, rows),
              task_status.orphaned_line(ctx), final.out_of_date_line(ctx),
              drift.summary_line(_last_drift(ctx), ctx.layout.reduce_state_local_rel)]
    after = [task_status.wave_line(task_status.plan_wave(ctx, {t.id: f for t, f in rows}))]
    for line in [*before, *task_status.task_lines(ctx, rows, show_all=args.all), *after]:
        if line:
            print(line)
    return 0


def _last_drift(ctx: RunContext) -> Any:
    """The drift entry of the last REDUCE, in its machine-local half (refreshed with the inventory, when it is)."""
    try:
        data = jsonio.read_json(ctx.layout.abs(ctx.layout.reduce_state_local_rel))
    except ValueError:
        return None
    return data.get("drift") if isinstance(data, dict) else None


def watch(ctx: RunContext, interval: float, out: TextIO) -> int:
    """Redraw the progress line from the files until no orchestrator runs the run."""
    live = bool(getattr(out, "isatty", None) and out.isatty()) and os.environ.get("TERM") != "dumb"
    last_counts: tuple[int, ...] | None = None
    while True:
        ctx.reload_provenance()
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
