"""`rlm events [--follow] [--json]`: the run's event log, one line per event."""

from __future__ import annotations

import argparse
import sys
import time

from rlm_tasks.cli.common import context, positive
from rlm_tasks.run import detach
from rlm_tasks.state import events as event_log

HELP = "the run's events (attempts, retries, stalls, budget stops), as lines or JSON; --follow while it runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per line (schemas/event.schema.json)")
    parser.add_argument("--follow", "-f", action="store_true", help="print new events as they come until the run ends")
    parser.add_argument("--interval", type=positive, default=0.5, help=argparse.SUPPRESS)


def events(args: argparse.Namespace) -> int:
    ctx = context(args)
    path = event_log.events_path(ctx.layout)
    found, offset = event_log.read(path)
    if not found and not args.follow:
        sys.stderr.write(f"rlm: no events recorded for run {ctx.plan.run_id} on this machine "
                         f"({event_log.events_rel(ctx.layout)})\n")
    _print(found, args.json)
    while args.follow:
        active = detach.run_active(ctx)
        time.sleep(args.interval)
        found, offset = event_log.read(path, offset)
        _print(found, args.json)
        if not active:  # read once more after the run ended, so its last events are printed
            break
    return 0


def _print(found: list[dict[str, object]], as_json: bool) -> None:
    for text in event_log.lines(found, as_json):
        sys.stdout.write(text + "\n")
    sys.stdout.flush()
