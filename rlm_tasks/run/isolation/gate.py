"""`setup:` and gate commands in an attempt's worktree: the user's own commands, one at a time, each with a log.

A command written as a string is a shell line the user wrote (as CI YAML takes them): it runs as
`/bin/sh -c <line>`. A command written as a list is an argv and runs without a shell. Either way it runs
like a worker (run/worker.run): its own process group, a timeout, nothing left behind, ended by a shutdown.
Its output goes to a machine-local log that the orchestrator names and never prints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from rlm_tasks.render.agents import Invocation
from rlm_tasks.run import worker

Command = str | tuple[str, ...]
SHELL = "/bin/sh"


class Failed(NamedTuple):
    command: str  # as the user wrote it, one line
    exit_code: int | None
    log: Path
    why: str  # "exit N", "timed out after Ns", "could not start: ..."


def shown(command: Command) -> str:
    """A command as one line: a shell line as written, an argv joined by spaces (both cut to 200 characters)."""
    text = command if isinstance(command, str) else " ".join(command)
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"


def argv(command: Command) -> tuple[str, ...]:
    return (SHELL, "-c", command) if isinstance(command, str) else tuple(command)


def run_all(commands: Sequence[Command], cwd: Path, env: Mapping[str, str], timeout: float | None,
            logs: Path, stem: str) -> Failed | None:
    """Run `commands` in order in `cwd`; the first that fails (exit ≠ 0, timeout, cannot start), or None.

    Command k's output goes to `<logs>/<stem>-<k>.log`.
    """
    logs.mkdir(parents=True, exist_ok=True)
    for k, command in enumerate(commands, 1):
        log = logs / f"{stem}-{k}.log"
        invocation = Invocation(argv=argv(command), env={**os.environ, **env}, report_from_stdout=False,
                                timeout=timeout)
        result = worker.run(invocation, b"", log, cwd, log.with_suffix(".none"))
        if result.error:
            return Failed(shown(command), None, log, f"could not start: {result.error}")
        if result.timed_out:
            return Failed(shown(command), None, log, f"timed out after {timeout:g}s")
        if result.interrupted:
            return Failed(shown(command), None, log, "interrupted")
        if result.exit_code != 0:
            return Failed(shown(command), result.exit_code, log, f"exit {result.exit_code}")
    return None
