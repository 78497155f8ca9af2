"""`rlm validate [FILE]`: check rlm.yaml and say how many tasks it plans."""

from __future__ import annotations

import argparse

from rlm_tasks.config.plan import load_plan
from rlm_tasks.install import init as starter

HELP = "check rlm.yaml; every problem as FILE:LINE:COL: key.path: message"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="file to validate (default: --config)")


def validate(args: argparse.Namespace) -> int:
    shown = args.file or args.config
    plan = load_plan(shown)
    for line in plan.warnings:
        print(line)
    verify = sum(1 for t in plan.tasks if t.mode == "verify")
    print(f"{shown}: valid: run {plan.run_id}, {len(plan.tasks) - verify} map tasks, {verify} verify tasks")
    outdated = starter.outdated_schema_copy(plan.root)
    if outdated:
        print(f"note: {outdated} differs from this rlm's schema; `rlm init --upgrade` refreshes it")
    return 0
