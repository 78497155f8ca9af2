"""Plan → doit task dicts. dodo.py hands `doit_namespace()` to doit and nothing else."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from . import budget, execute, final, planfile, reduce
from .config import ConfigError, TaskSpec, load_plan
from .console import reporter_class
from .context import RunContext
from .errors import UserError

# Our actions print nothing. doit's capture swaps sys.stdout/sys.stderr per action,
# and with parallel threads the swaps interleave and leave a dead stream behind.
QUIET: dict[str, Any] = {"verbosity": 0, "io": {"capture": False}}
DEFAULT_TASKS = ["plan", "map", "verify", "reduce", "deferred"]


def _worker_action(ctx: RunContext, task: TaskSpec) -> Callable[[], Any]:
    def action() -> Any:
        try:
            budget.claim_attempt(ctx, task.doit_name)
            outcome = execute.run_task(ctx, task)
        except UserError as exc:
            return TaskFailed(str(exc))
        if not outcome.ok:
            return TaskFailed(outcome.message)
        return {"report_path": outcome.message, "attempt": outcome.attempt, "duration": round(outcome.duration, 3)}

    action.__name__ = f"run_{task.mode}_{task.id}"
    return action


def _uptodate(ctx: RunContext, task: TaskSpec) -> Callable[[], bool]:
    def fresh() -> bool:
        return ctx.freshness(task).fresh

    return fresh


def worker_task(ctx: RunContext, task: TaskSpec) -> dict[str, Any]:
    return {
        "name": task.id,
        "doc": task.goal.splitlines()[0][:80] if task.goal else task.id,
        "actions": [_worker_action(ctx, task)],
        "targets": [str(ctx.report_file(task))],
        "task_dep": ["plan", *(ctx.plan.task(dep).doit_name for dep in task.depends_on)],
        "uptodate": [_uptodate(ctx, task)],
        **QUIET,
    }


def task_generators(ctx: RunContext) -> dict[str, Callable[[], Any]]:
    def task_plan() -> dict[str, Any]:
        """Validate rlm.yaml, write plan.json and the run contract."""
        return {
            "actions": [lambda: planfile.write_plan(ctx) or None],
            "uptodate": [lambda: planfile.is_current(ctx)],
            **QUIET,
        }

    def task_map() -> Iterator[dict[str, Any]]:
        """Run the MAP workers whose reports are missing, invalid or stale."""
        yield {"basename": "map", "name": None, "doc": "all map tasks"}
        for task in ctx.plan.tasks:
            if task.mode == "map":
                yield worker_task(ctx, task)

    def task_verify() -> Iterator[dict[str, Any]]:
        """Run the VERIFY workers, after the tasks they depend on."""
        yield {"basename": "verify", "name": None, "doc": "all verify tasks"}
        for task in ctx.plan.tasks:
            if task.mode == "verify":
                yield worker_task(ctx, task)

    def task_reduce() -> dict[str, Any]:
        """REDUCE: write reduce_state.json (states, sizes, ages, attempts; never report text)."""
        return {"actions": [lambda: _quiet(reduce.write_reduce_state, ctx)], "task_dep": ["map", "verify"],
                "uptodate": [False], **QUIET}

    def task_deferred() -> dict[str, Any]:
        """Collect every report's deferred opportunities into deferred.json."""
        return {"actions": [lambda: _quiet(reduce.write_deferred, ctx)], "task_dep": ["map", "verify"],
                "uptodate": [False], **QUIET}

    def task_final() -> dict[str, Any]:
        """DECIDE: final.json and final.md (refused until verify is fresh and decision: is written)."""
        return {"actions": [lambda: _quiet(final.write, ctx)], "task_dep": ["reduce", "deferred"],
                "uptodate": [False], **QUIET}

    return {"task_plan": task_plan, "task_map": task_map, "task_verify": task_verify,
            "task_reduce": task_reduce, "task_deferred": task_deferred, "task_final": task_final}


def _quiet(write: Callable[[RunContext], Any], ctx: RunContext) -> Any:
    """Run a writer as a doit action: user errors become one-line task failures."""
    try:
        write(ctx)
    except UserError as exc:
        return TaskFailed(str(exc))
    return None


def doit_config(ctx: RunContext) -> dict[str, Any]:
    ctx.layout.state_dir.mkdir(parents=True, exist_ok=True)
    return {
        "default_tasks": DEFAULT_TASKS,
        "dep_file": str(ctx.layout.doit_db),
        "backend": "sqlite3",
        "num_process": ctx.plan.budget.max_inflight,
        "par_type": "thread",
        "continue": True,  # one failed worker must not stop independent ones
        "reporter": reporter_class(ctx),
        "outfile": sys.stdout,  # doit's default is the stream at its import time
        "verbosity": 0,
    }


def doit_namespace(config_path: str | Path = "rlm.yaml") -> dict[str, Any]:
    """DOIT_CONFIG and the task_* functions for dodo.py; invalid config → errors on stderr, exit 2."""
    try:
        ctx = RunContext(load_plan(config_path))
    except ConfigError as exc:
        for line in exc.problems:
            sys.stderr.write(line + "\n")
        raise SystemExit(exc.exit_code) from None
    return {"DOIT_CONFIG": doit_config(ctx), **task_generators(ctx)}
