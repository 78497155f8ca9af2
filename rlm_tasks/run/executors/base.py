"""What every executor shares: the interface, its errors, and the local executor (worker.run in this thread)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from rlm_tasks.errors import UserError
from rlm_tasks.render.agents import Invocation
from rlm_tasks.run import worker

# (pid, start time, where it runs): {} for a local process; host, Dask worker and cancel event for a remote one
OnStart = Callable[[int, float, dict[str, Any]], None]


class ExecutorError(UserError):
    """RLM_EXECUTOR or rlm.yaml's `executor:` names no executor this machine can use."""

    exit_code = 2


class ClusterError(UserError):
    """The cluster cannot run this plan's attempts (unreachable, no workers, another repository)."""


class Executor(Protocol):
    def run(self, invocation: Invocation, prompt: bytes, log_path: Path, cwd: Path, report_path: Path, *,
            stall_after: float | None, watch: Sequence[Path], on_start: OnStart,
            events_path: Path | None = None) -> worker.AttemptResult: ...

    def close(self) -> None: ...


class LocalExecutor:
    """A process of this machine, started by this thread (worker.run)."""

    def run(self, invocation: Invocation, prompt: bytes, log_path: Path, cwd: Path, report_path: Path, *,
            stall_after: float | None, watch: Sequence[Path], on_start: OnStart,
            events_path: Path | None = None) -> worker.AttemptResult:
        return worker.run(invocation, prompt, log_path, cwd, report_path, stall_after=stall_after, watch=watch,
                          on_start=lambda pid, at: on_start(pid, at, {}), events_path=events_path)

    def close(self) -> None:
        pass
