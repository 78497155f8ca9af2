"""`rlm cleanup [--dry-run]`: delete archives past their TTL unless kept forever or in use."""

from __future__ import annotations

import argparse

from rlm_tasks.cli.common import repo_root
from rlm_tasks.config.plan import load_plan
from rlm_tasks.errors import UserError
from rlm_tasks.layout import CLEANUP_LOG
from rlm_tasks.lifecycle import cleanup as ttl

HELP = f"delete archives past their ttl_days unless kept forever or in use; log to {CLEANUP_LOG}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")


def cleanup(args: argparse.Namespace) -> int:
    root = repo_root(args)
    if not args.dry_run:
        try:  # the current run's `uses:` first, so cleanup never deletes what it reads
            plan = load_plan(args.config)
        except UserError:
            plan = None
        if plan is not None and plan.uses:
            with ttl.locked(root, ttl.MARKER_WAIT_SECONDS) as got:
                for line in ttl.sync_uses(root, plan.run_id, plan.uses) if got else []:
                    print(line)
    result = ttl.run(root, dry_run=args.dry_run)
    lines = ttl.summary_lines(result, dry_run=args.dry_run)
    for line in lines or [("nothing to delete" if args.dry_run else "cleanup: nothing to delete")]:
        print(line)
    return 0
