"""`rlm deferred`: collect the reports' deferred opportunities into deferred.json."""

from __future__ import annotations

import argparse

from rlm_tasks.cli.common import context
from rlm_tasks.phases import reduce as reduce_phase

HELP = "collect the reports' deferred opportunities into deferred.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def deferred(args: argparse.Namespace) -> int:
    ctx = context(args)
    data = reduce_phase.write_deferred(ctx)
    print(f"{reduce_phase.deferred_summary(data)}: {reduce_phase.deferred_path(ctx)}")
    return 0
