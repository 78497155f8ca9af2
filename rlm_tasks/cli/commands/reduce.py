"""`rlm reduce`: write reduce_state.json, the inventory of every task (never report contents)."""

from __future__ import annotations

import argparse

from rlm_tasks.cli.common import context, positive
from rlm_tasks.phases import reduce as reduce_phase
from rlm_tasks.state.context import RunContext

HELP = "write reduce_state.json: every task's state, report size and age, attempts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stale-seconds",
        type=positive,
        metavar="N",
        help="list in-flight tasks whose report is older than N seconds as stale (default: reduce.stale_seconds)",
    )


def reduce(args: argparse.Namespace) -> int:
    ctx = context(args)
    if args.stale_seconds is not None:
        ctx = RunContext(ctx.plan._replace(stale_seconds=args.stale_seconds))
    state, local = reduce_phase.write_reduce_state(ctx)
    # the inventory's path last, as every line naming it: ages, workers and drift are beside it on this machine
    print(f"{reduce_phase.reduce_summary(state, local)} (this machine's ages, running workers and drift in "
          f"{ctx.layout.reduce_state_local_rel}): {reduce_phase.reduce_state_path(ctx)}")
    return 0
