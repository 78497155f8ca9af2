"""`rlm init`: write the starter rlm.yaml, dodo.py, schema copy, .gitignore line (and CI workflow) here."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlm_tasks.install import init as starter

HELP = "make this repository an rlm repository: starter rlm.yaml, dodo.py, .gitignore line, schema copy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", choices=starter.AGENTS, default="command",
                        help="the starter's agent kind (default: %(default)s, a bundled worker that runs offline)")
    parser.add_argument("--ci", choices=starter.CI_KINDS, help="also write a CI workflow that runs `rlm check`")
    parser.add_argument("--run-id", help="the starter's run_id (default: a new one, run_<UTC timestamp>_<slug> "
                                         "named after this directory)")
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")
    parser.add_argument("--upgrade", action="store_true",
                        help="only refresh the schema copy (and the bundled worker, where it is used) to this version")


def init(args: argparse.Namespace) -> int:
    result = starter.init(Path.cwd(), agent=args.agent, ci=args.ci, force=args.force, upgrade=args.upgrade,
                            run_id=args.run_id)
    for line in result.lines():
        print(line)
    if not args.upgrade:
        print("next:")
        for command in starter.NEXT_STEPS:
            print(f"  {command}")
    return 0
