"""`rlm run`: run the stale and missing tasks through doit, in this terminal or (--detach) in the background."""

from __future__ import annotations

import argparse
import os

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from rlm_tasks.cli.common import context, jobs
from rlm_tasks.config.plan import load_plan
from rlm_tasks.layout import BREAKS_LOG
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.run import detach, inflight, worker
from rlm_tasks.state.context import RunContext
from rlm_tasks.tasks import doit_namespace

HELP = "run the stale and missing tasks (same as `doit` in the repo root)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--jobs", type=jobs, help="workers at once (default: budget.max_inflight)")
    parser.add_argument("tasks", nargs="*", help="doit task names, e.g. map:inventory (default: all)")
    parser.add_argument("--detach", action="store_true",
                        help="start the run in the background and return at once (pid and log under the run dir)")
    parser.add_argument("--adopt", action="store_true",
                        help="wait for workers a killed orchestrator left running and accept their reports "
                             "(default: end them); same as RLM_ADOPT=1 doit")
    parser.add_argument("--break-lock", action="store_true",
                        help="take the run's lock when it is stale (holder on another host, older than "
                             f"lifecycle.lock_stale_hours); logged to {BREAKS_LOG}")


def run(args: argparse.Namespace) -> int:
    worker.kill_grace()  # a bad RLM_KILL_GRACE_SECONDS is refused before anything starts, --detach too
    if args.break_lock:  # take a stale lock (logged) and hand it back; the run below takes it as usual
        ctx = RunContext(load_plan(args.config))
        lock = RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours)
        lock.acquire(break_lock=True)
        lock.release()
    if args.detach:
        return _detach(args)
    if not args.adopt:
        return _doit(args)
    previous = os.environ.get(inflight.ADOPT_ENV)
    os.environ[inflight.ADOPT_ENV] = "1"  # read by the run session of this in-process doit
    try:
        return _doit(args)
    finally:
        if previous is None:
            os.environ.pop(inflight.ADOPT_ENV, None)
        else:
            os.environ[inflight.ADOPT_ENV] = previous


def _detach(args: argparse.Namespace) -> int:
    ctx = context(args)
    run_args = (["--adopt"] if args.adopt else []) + (["-n", str(args.jobs)] if args.jobs is not None else [])
    state = detach.start(ctx, args.config, run_args + list(args.tasks))
    print(f"rlm: run {ctx.plan.run_id} started in the background (pid {state['pid']}); "
          f"log: {state['log_path']}; `rlm wait` returns when it ends, `rlm status` shows progress")
    return 0


def _doit(args: argparse.Namespace) -> int:
    doit_args = ["run"]
    if args.jobs is not None:
        doit_args += ["-n", str(args.jobs)]
    doit_args += args.tasks
    try:
        return int(DoitMain(ModuleTaskLoader(doit_namespace(args.config))).run(doit_args))
    except SystemExit as exc:  # the run sets the exit code of a run with failures, a lock, an interrupt
        return int(exc.code or 0)
