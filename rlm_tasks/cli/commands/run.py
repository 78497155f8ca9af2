"""`rlm run`: run the stale and missing tasks through doit, in this terminal or (--detach) in the background."""

from __future__ import annotations

import argparse
import os

from doit.doit_cmd import DoitMain

from rlm_tasks.cli.common import context, jobs
from rlm_tasks.config.plan import load_plan
from rlm_tasks.errors import UserError, close_match
from rlm_tasks.layout import BREAKS_LOG
from rlm_tasks.lifecycle import reopen
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.run import detach, doitdb, executors, inflight, worker
from rlm_tasks.state.context import RunContext
from rlm_tasks.tasks import RlmTaskLoader, WaveOptions

HELP = "run the stale and missing tasks (same as `doit` in the repo root)"
PHASE_TASKS = ("plan", "map", "verify", "reduce", "deferred", "final", "archive")  # tasks.task_generators


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--jobs", type=jobs, help="workers at once (default: budget.max_inflight)")
    parser.add_argument("tasks", nargs="*", help="task ids or doit task names, e.g. inventory or map:inventory "
                                                 "(default: all)")
    parser.add_argument("--force", action="store_true",
                        help="run the named tasks again even though their reports are fresh (the earlier report "
                             "goes to history); same as `doit forget TASK` before `doit`")
    parser.add_argument("--wave", action="store_true",
                        help="the safe-first wave: start at most budget.max_inflight (or -n) of the tasks that are "
                             "ready now (every dependency done), no join task, no refill as they finish, and stop; "
                             "workers a killed orchestrator left are ended (or --adopt'ed) first and rerun in it; "
                             "`rlm status` shows the next wave")
    parser.add_argument("--allow-join", action="store_true",
                        help="with --wave: join tasks (ids starting with `join-`, or `join: true`) may start too")
    parser.add_argument("--allow-refill", action="store_true",
                        help="with --wave: every ready task runs, a new one starting as one finishes "
                             "(budget.max_inflight at once)")
    parser.add_argument("--detach", action="store_true",
                        help="start the run in the background and return at once (pid and log under the run dir)")
    parser.add_argument("--adopt", action="store_true",
                        help="wait for workers a killed orchestrator left running and accept their reports "
                             "(default: end them); same as RLM_ADOPT=1 doit")
    parser.add_argument("--reopen", action="store_true",
                        help="run an archived (finished) run again instead of refusing; its archive stays as it is "
                             "(same as RLM_REOPEN=1 doit)")
    parser.add_argument("--executor", metavar="WHERE",
                        help="where attempts run: local, dask, or a Dask scheduler address such as "
                             "tcp://HOST:8786 (overrides rlm.yaml's executor:); same as RLM_EXECUTOR=WHERE doit")
    parser.add_argument("--break-lock", action="store_true",
                        help="take the run's lock when it is stale (holder on another host, older than "
                             f"lifecycle.lock_stale_hours); logged to {BREAKS_LOG}")


def _wave(args: argparse.Namespace) -> WaveOptions | None:
    if not args.wave:
        return None
    jobs = None if args.jobs is None else max(args.jobs, 1)  # -n 0 runs one task at a time, as doit does
    return WaveOptions(allow_join=args.allow_join, allow_refill=args.allow_refill, jobs=jobs)


def run(args: argparse.Namespace) -> int:
    if (args.allow_join or args.allow_refill) and not args.wave:
        raise UserError("rlm run: --allow-join and --allow-refill go with --wave (a plain run runs every stale "
                        "task, joins included)", exit_code=2)
    worker.kill_grace()  # a bad RLM_KILL_GRACE_SECONDS is refused before anything starts, --detach too
    if args.tasks or args.force:
        ctx = context(args)
        args.tasks = doit_names(ctx, args.tasks)
        if args.force:
            if not args.tasks:
                raise UserError("rlm run --force: name the tasks to run again, e.g. `rlm run --force "
                                f"{ctx.plan.tasks[0].id if ctx.plan.tasks else 'TASK'}`", exit_code=2)
            doitdb.force(ctx.layout.doit_db, [name for name in args.tasks if name in _worker_names(ctx)])
    if args.break_lock:  # take a stale lock (logged) and hand it back; the run below takes it as usual
        ctx = RunContext(load_plan(args.config))
        lock = RunLock(ctx.layout, ctx.plan.lifecycle.lock_stale_hours)
        lock.acquire(break_lock=True)
        lock.release()
    if args.detach:
        return _detach(args)
    # read by the run session of this in-process doit
    env = {inflight.ADOPT_ENV: "1" if args.adopt else None, executors.ENV: args.executor,
           reopen.REOPEN_ENV: "1" if args.reopen else None}
    previous = {name: os.environ.get(name) for name, value in env.items() if value is not None}
    os.environ.update({name: value for name, value in env.items() if value is not None})
    try:
        return _doit(args)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _worker_names(ctx: RunContext) -> dict[str, str]:
    return {task.doit_name: task.doit_name for task in ctx.plan.tasks}


def doit_names(ctx: RunContext, names: list[str]) -> list[str]:
    """Each name as doit knows it: `parser` is `map:parser`; an unknown name is a usage error (exit 2)."""
    known = {**_worker_names(ctx), **{task.id: task.doit_name for task in ctx.plan.tasks},
             **{name: name for name in PHASE_TASKS}}
    out = []
    for name in names:
        if name not in known:
            close = close_match(name, known)
            hint = f" (did you mean '{close}'?)" if close else ""
            raise UserError(f"rlm run: unknown task '{name}'{hint}; `rlm status` lists the tasks", exit_code=2)
        out.append(known[name])
    return out


def _detach(args: argparse.Namespace) -> int:
    ctx = context(args)
    if not args.reopen:  # refused here, in this terminal, not in the background run's log
        reopen.refuse_or_reopen(ctx, False, args.tasks)
    run_args = (["--adopt"] if args.adopt else []) + (["--wave"] if args.wave else []) \
        + (["--allow-join"] if args.allow_join else []) + (["--allow-refill"] if args.allow_refill else []) \
        + (["--reopen"] if args.reopen else []) \
        + (["-n", str(args.jobs)] if args.jobs is not None else [])
    run_args += ["--executor", args.executor] if args.executor is not None else []
    state = detach.start(ctx, args.config, run_args + list(args.tasks))
    print(f"rlm: run {ctx.plan.run_id} started in the background (pid {state['pid']}); "
          f"log: {state['log_path']}; `rlm wait` returns when it ends, `rlm status` shows progress")
    return 0


def _doit(args: argparse.Namespace) -> int:
    doit_args = ["run"]
    if args.jobs is not None:
        doit_args += ["-n", str(args.jobs)]
    doit_args += args.tasks
    loader = RlmTaskLoader(args.config, wave=_wave(args))
    try:
        return int(DoitMain(loader).run(doit_args))
    except SystemExit as exc:  # the run sets the exit code of a run with failures, a lock, an interrupt
        return int(exc.code or 0)
    finally:
        loader.close()  # whatever doit did (list, info, an early exit), the run leaves nothing in this process
