"""Executors run attempts, nothing else: the runner keeps the plan, doit's graph, provenance, retries, budget,
timeouts, stall detection, the lock and report validation whichever executor starts the process.

`local` (the default) runs each attempt in a thread of this process; `dask` submits it to a Dask distributed
cluster (executors/dask.py). rlm.yaml's `executor:` chooses, and RLM_EXECUTOR (`local`, `dask` or a
scheduler address such as tcp://HOST:8786; `rlm run --executor` sets it) overrides it on one machine.
"""

from __future__ import annotations

import os
import re
from typing import Any

from rlm_tasks.config.records import Plan
from rlm_tasks.run.executors import dask
from rlm_tasks.run.executors.base import Executor, ExecutorError, LocalExecutor
from rlm_tasks.state.context import RunContext

ENV = "RLM_EXECUTOR"
ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss)://[^\s/]+$")

def choose(plan: Plan) -> tuple[str, str | None]:
    """(kind, scheduler address) from RLM_EXECUTOR, else rlm.yaml's `executor:`."""
    kind, scheduler = plan.executor.kind, plan.executor.scheduler
    value = os.environ.get(ENV, "").strip()
    if value in ("local", "dask"):
        kind = value
    elif ADDRESS.match(value):
        kind, scheduler = "dask", value
    elif value:
        raise ExecutorError(f"{ENV}: expected local, dask or a Dask scheduler address such as tcp://HOST:8786, "
                            f"got {value!r}")
    if kind == "dask" and not scheduler:
        raise ExecutorError(f"{plan.config_path}: executor: kind dask needs a scheduler address: "
                            f"executor.scheduler in rlm.yaml, "
                            f"{ENV}=tcp://HOST:8786 or rlm run --executor tcp://HOST:8786")
    return kind, scheduler


def create(ctx: RunContext) -> Executor:
    """The executor for this run (run.runstate.Run keeps it: one Dask client for all its attempts)."""
    kind, scheduler = choose(ctx.plan)
    if kind == "dask" and scheduler is not None:
        try:
            dask.distributed()
        except ImportError:
            raise ExecutorError(f"{ctx.plan.config_path}: executor: kind dask needs Dask distributed: "
                                "pip install 'rlm-tasks[dask]'") from None
        shared = [t.doit_name for t in ctx.plan.tasks if t.isolation is None]
        if ctx.plan.executor.filesystem == "none" and shared:
            raise ExecutorError(f"{ctx.plan.config_path}: executor.filesystem none needs isolation: worktree "
                                f"on every task; not on {', '.join(shared[:5])}"
                                + (f" (+{len(shared) - 5} more)" if len(shared) > 5 else ""))
        return dask.DaskExecutor(ctx, scheduler)
    return LocalExecutor()


def end_remote(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ask the cluster to end remote attempts a dead orchestrator left; the entries it reached."""
    if not entries:
        return []
    try:
        dask.distributed()
    except ImportError:  # not installed here: nothing can reach those attempts
        return []
    return dask.end_remote(entries)
