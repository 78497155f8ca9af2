"""Detached runs: `rlm run --detach` starts the run in the background and returns; `rlm wait` waits for it.

An orchestrating agent's tool call cannot block for an hour. The background
run lives in its own session (so the caller's terminal, job control and
Ctrl-C do not reach it); its pid, argv, log and -- once finished -- exit code
are in `.rlm/local/runs/<run_id>/detached.json`, its output in `detached.log` next to it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rlm_tasks import jsonio
from rlm_tasks.clock import iso
from rlm_tasks.errors import UserError
from rlm_tasks.lifecycle.hostlock import held_on_this_host
from rlm_tasks.lifecycle.runlock import LOCKED_EXIT_CODE
from rlm_tasks.procs import pid_alive
from rlm_tasks.run import orphans
from rlm_tasks.state import inflight
from rlm_tasks.state.context import RunContext

FORMAT_VERSION = 1
START_TIMEOUT_SECONDS = 15.0
BACKGROUND_MODULE = "rlm_tasks.cli.background"  # runs `rlm run ...` and records its exit code
PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent.parent)


class AlreadyRunning(UserError):
    """The run is already running (in the background or in a terminal)."""

    exit_code = LOCKED_EXIT_CODE


def state_rel(ctx: RunContext) -> str:
    return ctx.layout.detached_state_rel


def log_rel(ctx: RunContext) -> str:
    return ctx.layout.detached_log_rel


def read_state(path: Path) -> dict[str, Any]:
    try:
        data = jsonio.read_json(path, default={})
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def background_running(state: dict[str, Any]) -> bool:
    return state.get("exit_code") is None and pid_alive(state.get("pid"), state.get("pid_start_ticks"))


def run_active(ctx: RunContext) -> bool:
    """A run of this run id is going on: a detached one, or `doit` in some terminal (its lock held on this host
    tells even when a worker removed .rlm/local/)."""
    return (background_running(read_state(ctx.layout.abs(state_rel(ctx))))
            or inflight.orchestrator_alive(inflight.read(ctx.layout))
            or held_on_this_host(ctx.layout.root, ctx.plan.run_id))


def start(ctx: RunContext, config: str, run_args: list[str]) -> dict[str, Any]:
    """Start `rlm run RUN_ARGS` in the background; returns detached.json once the run has its pid."""
    state_path = ctx.layout.abs(state_rel(ctx))
    previous = read_state(state_path)
    if background_running(previous):
        raise AlreadyRunning(f"run '{ctx.plan.run_id}' is already running in the background (pid {previous['pid']}); "
                             f"`rlm wait` waits for it")
    if inflight.orchestrator_alive(inflight.read(ctx.layout)):
        raise AlreadyRunning(f"run '{ctx.plan.run_id}' is already running in another process; `rlm wait` waits for it")
    if held_on_this_host(ctx.layout.root, ctx.plan.run_id):
        raise AlreadyRunning(f"run '{ctx.plan.run_id}' is locked by another process on this host; "
                             "`rlm wait` waits for it")
    rlm_argv = ["-c", str(Path(config).resolve()), "run", *run_args]
    jsonio.write_json(state_path, {
        "version": FORMAT_VERSION, "run_id": ctx.plan.run_id, "pid": None, "pid_start_ticks": None,
        "host": socket.gethostname(), "cwd": os.getcwd(), "argv": ["rlm", *rlm_argv],
        "log_path": log_rel(ctx), "started_at": iso(), "finished_at": None, "exit_code": None,
    })
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    log_path = ctx.layout.abs(log_rel(ctx))
    with log_path.open("wb") as log:
        launcher = orphans.spawn(  # its own session: the caller's Ctrl-C and hangup do not reach it
            [sys.executable, "-m", BACKGROUND_MODULE, str(state_path), *rlm_argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        try:
            returncode = launcher.wait()
        finally:
            orphans.forget(launcher.pid)
    if returncode != 0:
        raise UserError(f"could not start the background run (exit {returncode}); log: {log_rel(ctx)}")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        state = read_state(state_path)
        if state.get("pid") is not None:
            return state
        time.sleep(0.02)
    raise UserError(f"the background run did not start within {START_TIMEOUT_SECONDS:g}s; log: {log_rel(ctx)}")
