"""`rlm check`: make -q for CI; lists every task that is not fresh (an accepted partial report counts as done)."""

from __future__ import annotations

import argparse

from rlm_tasks.cli.common import context
from rlm_tasks.phases import final
from rlm_tasks.state import status

HELP = "make -q for CI: exit 0 when every report is fresh, 1 otherwise"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def check(args: argparse.Namespace) -> int:
    ctx = context(args)
    code, lines = status.check(ctx, status.collect(ctx))
    stale_final = final.out_of_date_line(ctx)  # a final.json that no longer says what the run holds
    ctx.save_cache()  # what the check found current, so the next one is a stat per file
    for line in [*lines, *([stale_final] if stale_final else [])]:
        print(line)
    return 1 if stale_final else code
