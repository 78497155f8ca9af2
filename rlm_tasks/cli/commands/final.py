"""`rlm final`: render the decision into final.json and final.md."""

from __future__ import annotations

import argparse

from rlm_tasks.cli.common import context
from rlm_tasks.phases import final as final_phase

HELP = "write final.json and final.md (needs fresh verify reports and a decision)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def final(args: argparse.Namespace) -> int:
    ctx = context(args)
    print(final_phase.summary_line(ctx, final_phase.write(ctx)))
    return 0
