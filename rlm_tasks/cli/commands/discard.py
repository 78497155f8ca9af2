"""`rlm discard ID`: drop the change an isolated task kept after a conflict, so the task runs again."""

from __future__ import annotations

import argparse

from rlm_tasks.cli.common import context
from rlm_tasks.errors import UserError, close_match
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.run.isolation import kept, merge

HELP = "drop a conflicted task's kept worktree (its patch stays in the run's artifacts); the task then reruns"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id", metavar="ID", help="the task (its id, or map:ID / verify:ID)")


def discard(args: argparse.Namespace) -> int:
    ctx = context(args)
    wanted = str(args.task_id).split(":", 1)[-1] if str(args.task_id).startswith(("map:", "verify:")) \
        else str(args.task_id)
    ids = [t.id for t in ctx.plan.tasks]
    if wanted not in ids:
        hint = close_match(wanted, ids)
        raise UserError(f"rlm discard: no task {wanted!r} in run '{ctx.plan.run_id}'"
                        + (f" (did you mean {hint!r}?)" if hint else ""), exit_code=2)
    task = ctx.task(wanted)
    lock = RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours)
    lock.acquire()
    try:
        merge.recover(ctx.plan.root)
        dropped = kept.discard(ctx, task)
    finally:
        lock.release()
    if not dropped:
        print(f"rlm discard: {task.doit_name} keeps no conflicted change; nothing to do")
        return 0
    print(f"rlm discard: {task.doit_name}: removed {len(dropped)} kept worktree(s) ({', '.join(dropped)}); "
          f"patches stay in {ctx.layout.artifacts_rel}/patches/; the task runs again on the next doit")
    return 0
