"""The lifecycle verbs: `rlm archive [verify|use|release|list]`, `rlm cleanup`, and `run --break-lock`.

`register(subparsers)` adds them to the parser cli.py builds. Exit codes:
  archive          0 archived; 1 refused (no final.json/deferred.json) or failed (nothing archived);
                   3 the run is locked (or its lock is stale: --break-lock)
  archive verify   0 intact; 1 changed, missing or extra files (listed); 2 no such archive
  archive use      0 marked (or already); 2 no such archive; 3 cleanup.lock busy too long
  archive release  0 released (or was not marked); 2 no such archive
  archive list     0
  cleanup          0, also when skipped because another process is cleaning up
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlm_tasks.config.plan import load_plan
from rlm_tasks.errors import UserError
from rlm_tasks.lifecycle import archive, cleanup
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.state.context import RunContext

Verb = Callable[[argparse.Namespace], int]


def _root(args: argparse.Namespace) -> Path:
    """The repository root: rlm.yaml's directory, also when the verb does not need rlm.yaml itself."""
    return Path(args.config).resolve().parent


def cmd_archive(args: argparse.Namespace) -> int:
    ctx = RunContext(load_plan(args.config))
    lock = RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours)
    lock.acquire(break_lock=args.break_lock)
    try:
        result = archive.create(ctx, ttl_days=args.ttl_days, keep_forever=True if args.keep_forever else None)
    finally:
        lock.release()
    for line in result.lines(ctx.plan.run_id):
        print(line)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    result = archive.verify(_root(args), args.archive_id)
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


def cmd_use(args: argparse.Namespace) -> int:
    run_id = _run_id(args)
    new = cleanup.use(_root(args), args.archive_id, run_id)
    print(f"archive {args.archive_id} {'is now' if new else 'was already'} in use by run {run_id}; "
          f"TTL cleanup keeps it until `rlm archive release {args.archive_id} --run {run_id}`")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    run_id = _run_id(args)
    gone = cleanup.release(_root(args), args.archive_id, run_id)
    print(f"archive {args.archive_id}: " + (f"released by run {run_id}" if gone else f"was not in use by run {run_id}"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    lines = archive.list_lines(_root(args))
    for line in lines or ["no archives"]:
        print(line)
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    root = _root(args)
    if not args.dry_run:
        try:  # the current run's `uses:` first, so cleanup never deletes what it reads
            plan = load_plan(args.config)
        except UserError:
            plan = None
        if plan is not None and plan.uses:
            with cleanup.locked(root, cleanup.MARKER_WAIT_SECONDS) as got:
                for line in cleanup.sync_uses(root, plan.run_id, plan.uses) if got else []:
                    print(line)
    result = cleanup.run(root, dry_run=args.dry_run)
    lines = cleanup.summary_lines(result, dry_run=args.dry_run)
    for line in lines or [("nothing to delete" if args.dry_run else "cleanup: nothing to delete")]:
        print(line)
    return 0


def cmd_run_with_break(original: Verb, args: argparse.Namespace) -> int:
    """`rlm run --break-lock`: take a stale lock (logged), hand it back, then run as usual."""
    if getattr(args, "break_lock", False):
        ctx = RunContext(load_plan(args.config))
        lock = RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours)
        lock.acquire(break_lock=True)
        lock.release()
    return original(args)


def register(sub: Any) -> None:
    """Add `archive`, `cleanup` and `run --break-lock` to the verbs cli.py built."""
    p = sub.add_parser("archive", help="archive a finished run (final.json + deferred.json) under .rlm/archive/; "
                                       "ACTION verify/use/release/list works on archives")
    p.add_argument("--ttl-days", type=float, metavar="N", help="days before TTL cleanup may delete it "
                                                               "(default: lifecycle.ttl_days, 14)")
    p.add_argument("--keep-forever", action="store_true", help="never delete it by TTL cleanup")
    p.add_argument("--break-lock", action="store_true", help="take the run's lock if it is stale (logged)")
    p.set_defaults(func=cmd_archive)
    actions = p.add_subparsers(dest="archive_action", metavar="ACTION")
    q = actions.add_parser("verify", help="re-hash an archive against its manifest: 0 intact, 1 changed")
    q.add_argument("archive_id", metavar="ARCHIVE_ID")
    q.set_defaults(func=cmd_verify)
    for name, func, text in (("use", cmd_use, "mark an archive in use by a run, so TTL cleanup keeps it"),
                             ("release", cmd_release, "remove a run's in-use marker from an archive")):
        q = actions.add_parser(name, help=text)
        q.add_argument("archive_id", metavar="ARCHIVE_ID")
        q.add_argument("--run", metavar="RUN_ID", help="the run (default: run_id of rlm.yaml)")
        q.set_defaults(func=func)
    q = actions.add_parser("list", help="every archive with its age, retention and users")
    q.set_defaults(func=cmd_list)

    p = sub.add_parser("cleanup", help="delete archives past their ttl_days unless kept forever or in use; "
                                       "log to .rlm/cleanup.log")
    p.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
    p.set_defaults(func=cmd_cleanup)

    run = sub.choices.get("run")
    if run is not None:
        run.add_argument("--break-lock", action="store_true",
                         help="take the run's lock when it is stale (holder on another host, older than "
                              "lifecycle.lock_stale_hours); logged to .rlm/locks/breaks.log")
        run.set_defaults(func=functools.partial(cmd_run_with_break, run.get_default("func")))
