"""No silent waste: the agent checked once before the first attempt, and a run that stops starting attempts
once `budget.stop_after_same_failures` attempts in a row failed with the same cause.

A cause comes from the agent's structured events (its kind's `failure` hook: codex's error items, claude's
result event), or is `agent_unavailable` when the agent could not be started at all. An attempt that
failed for a reason the events do not name, or succeeded, breaks the streak.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from rlm_tasks.config.records import TaskSpec
from rlm_tasks.errors import UserError
from rlm_tasks.render import agents
from rlm_tasks.run import usage
from rlm_tasks.state.context import RunContext
from rlm_tasks.vocabulary import CAUSE_TEXT, Cause, Outcome, is_failure

CHECK_TIMEOUT_SECONDS = 30.0


class AgentCheckFailed(UserError):
    """An agent named in rlm.yaml does not exist or does not run: nothing started."""

    exit_code = 2  # a mistake in rlm.yaml's agent (or the machine's PATH): the line starts with rlm.yaml


def cause(events_kind: str | None, events: Path, outcome: str) -> Cause | None:
    """Why a failed attempt failed, when its events say (or it could not start at all)."""
    if outcome == Outcome.START_ERROR:
        return Cause.AGENT_UNAVAILABLE
    if events_kind is None or not is_failure(outcome):
        return None
    failure = usage.failure_from_events(events_kind, events)
    return Cause(failure.cause) if failure is not None else None


class Streak:
    """Failed attempts in a row with one cause, across every task of one run."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cause: str | None = None
        self.count = 0
        self.stopped: str | None = None  # the one line that says why no new attempt starts
        self._lock = threading.Lock()

    def ended(self, record: dict[str, Any]) -> None:
        if record.get("outcome") == Outcome.INTERRUPTED:
            return  # a signal ended it: says nothing about the agent
        with self._lock:
            found = record.get("cause")
            if found is None or found != self.cause:
                self.cause, self.count = found, 0
            if found is None:
                return
            self.count += 1
            if self.limit and self.count >= self.limit and self.stopped is None:
                self.stopped = (f"stopped: {self.count} attempts in a row failed with the same cause: "
                                f"{CAUSE_TEXT[Cause(found)]} (last: {record.get('log_path')}); no new attempt "
                                "starts (fix it and run again; budget.stop_after_same_failures sets how many)")


def check_agents(ctx: RunContext, tasks: list[TaskSpec]) -> None:
    """Each distinct agent of `tasks` exists and runs (its kind's version check), once, before any worker
    starts; AgentCheckFailed (one line, exit 2) otherwise."""
    seen: set[tuple[str, ...]] = set()
    where = os.path.relpath(ctx.plan.config_path, ctx.plan.root)
    for task in tasks:
        try:
            argv = agents.check_argv(ctx.plan, ctx.layout, task)
        except UserError as exc:
            raise AgentCheckFailed(f"{where}: agent check failed for {task.doit_name}: {exc}; no worker started") \
                from None
        if not argv or tuple(argv) in seen:
            continue
        seen.add(tuple(argv))
        problem = _runs(argv, dict(os.environ) | dict(task.agent.env)) if len(argv) > 1 else _exists(argv[0])
        if problem is not None:
            raise AgentCheckFailed(f"{where}: agent check failed: `{' '.join(argv)}` {problem} ({task.agent.kind} "
                                   f"agent of {task.doit_name}; agent.binary or agent.command); no worker started")


def _exists(program: str) -> str | None:
    if "/" in program:
        return None if os.path.isfile(program) and os.access(program, os.X_OK) else "is not an executable file"
    return None if shutil.which(program) else "is not on PATH"


def _runs(argv: list[str], env: dict[str, str]) -> str | None:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env, timeout=CHECK_TIMEOUT_SECONDS, start_new_session=True, check=False)
    except subprocess.TimeoutExpired:
        return f"did not answer within {CHECK_TIMEOUT_SECONDS:g}s"
    except OSError as exc:
        return f"could not start: {exc.strerror or exc}"
    return None if done.returncode == 0 else f"exited with code {done.returncode}"
