"""`rlm check`: make -q for CI; lists every task that is not fresh."""

from __future__ import annotations

import argparse

from rlm_tasks.cli.common import context
from rlm_tasks.state import status

HELP = "make -q for CI: exit 0 when every report is fresh, 1 otherwise"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def check(args: argparse.Namespace) -> int:
    ctx = context(args)
    rows = status.collect(ctx)
    print(status.summary_line(ctx, rows))
    not_fresh = [(t, f) for t, f in rows if not f.fresh]
    for task, fresh in not_fresh:
        print(status.task_line(task, fresh))
    return 1 if not_fresh else 0
