"""`rlm archive [verify|use|release|list]`: archive a finished run, and work on the archives."""

from __future__ import annotations

import argparse

from rlm_tasks.cli.common import number, repo_root
from rlm_tasks.config import defaults
from rlm_tasks.config.plan import load_plan
from rlm_tasks.errors import UserError
from rlm_tasks.lifecycle import archive as archives
from rlm_tasks.lifecycle import cleanup, manifest
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.state.context import RunContext

HELP = ("archive a finished run (final.json + deferred.json) under .rlm/archive/; "
        "ACTION verify/use/release/list works on archives")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ttl-days", type=number(0, maximum=36500), metavar="N",
                        help="days before TTL cleanup may delete it "
                        f"(default: lifecycle.ttl_days, {defaults.TTL_DAYS})")
    parser.add_argument("--keep-forever", action="store_true", help="never delete it by TTL cleanup")
    parser.add_argument("--break-lock", action="store_true", help="take the run's lock if it is stale (logged)")
    actions = parser.add_subparsers(dest="archive_action", metavar="ACTION")
    action = actions.add_parser("verify", help="re-hash an archive against its manifest: 0 intact, 1 changed")
    action.add_argument("archive_id", metavar="ARCHIVE_ID")
    action.set_defaults(func=verify)
    for name, func, text in (("use", use, "mark an archive in use by a run, so TTL cleanup keeps it"),
                             ("release", release, "remove a run's in-use marker from an archive")):
        action = actions.add_parser(name, help=text)
        action.add_argument("archive_id", metavar="ARCHIVE_ID")
        action.add_argument("--run", metavar="RUN_ID", help="the run (default: run_id of rlm.yaml)")
        action.set_defaults(func=func)
    action = actions.add_parser("list", help="every archive with its age, retention and users")
    action.set_defaults(func=list_archives)


def archive(args: argparse.Namespace) -> int:
    ctx = RunContext(load_plan(args.config))
    lock = RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours)
    lock.acquire(break_lock=args.break_lock)
    try:
        result = archives.create(ctx, ttl_days=args.ttl_days, keep_forever=True if args.keep_forever else None)
    finally:
        lock.release()
    for line in result.lines(ctx.plan.run_id):
        print(line)
    return 0


def verify(args: argparse.Namespace) -> int:
    result = manifest.verify(repo_root(args), args.archive_id)
    for line in result.lines():
        print(line)
    return 0 if result.intact else 1


def _run_id(args: argparse.Namespace) -> str:
    if args.run:
        return str(args.run)
    try:
        return load_plan(args.config).run_id
    except UserError:
        raise UserError(f"--run RUN_ID is needed ({args.config} does not name a run)", exit_code=2) from None


def use(args: argparse.Namespace) -> int:
    run_id = _run_id(args)
    new = cleanup.use(repo_root(args), args.archive_id, run_id)
    print(f"archive {args.archive_id} {'is now' if new else 'was already'} in use by run {run_id}; "
          f"TTL cleanup keeps it until `rlm archive release {args.archive_id} --run {run_id}`")
    return 0


def release(args: argparse.Namespace) -> int:
    run_id = _run_id(args)
    gone = cleanup.release(repo_root(args), args.archive_id, run_id)
    print(f"archive {args.archive_id}: " + (f"released by run {run_id}" if gone else f"was not in use by run {run_id}"))
    return 0


def list_archives(args: argparse.Namespace) -> int:
    lines = manifest.list_lines(repo_root(args))
    for line in lines or ["no archives"]:
        print(line)
    return 0
