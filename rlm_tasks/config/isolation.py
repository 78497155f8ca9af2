"""The frozen records of isolated attempts: a task's `isolation:` settings and the run's `setup:`."""

from __future__ import annotations

from typing import Any, NamedTuple

from rlm_tasks.config import defaults

Command = str | tuple[str, ...]  # a shell line, or an argv run without a shell


# task keys and their built-in defaults (config/freeze.py applies `defaults:` over these)
ISOLATION_KEYS = (("isolation", defaults.ISOLATION), ("gate", None), ("gate_timeout", defaults.GATE_TIMEOUT),
                  ("expects_changes", defaults.EXPECTS_CHANGES), ("drift", defaults.DRIFT))


class Isolation(NamedTuple):
    """A task with `isolation: worktree`: what gates its change and what it may change."""

    gate: tuple[Command, ...] | None = None  # None: the contract's verification commands
    gate_timeout: float = defaults.GATE_TIMEOUT
    expects_changes: bool = defaults.EXPECTS_CHANGES
    drift: str = defaults.DRIFT


class Setup(NamedTuple):
    copy: tuple[str, ...] = ()
    commands: tuple[Command, ...] = ()
    timeout: float = defaults.SETUP_TIMEOUT


def command(raw: Any) -> Command:
    return raw if isinstance(raw, str) else tuple(raw)


def freeze_task(pick: dict[str, Any]) -> Isolation | None:
    """`pick`: the task's keys with `defaults:` and the built-in defaults applied."""
    if pick.get("isolation", defaults.ISOLATION) != "worktree":
        return None
    gate = pick.get("gate")
    return Isolation(
        gate=None if gate is None else tuple(command(c) for c in gate),
        gate_timeout=float(pick.get("gate_timeout", defaults.GATE_TIMEOUT)),
        expects_changes=bool(pick.get("expects_changes", defaults.EXPECTS_CHANGES)),
        drift=str(pick.get("drift", defaults.DRIFT)),
    )


def freeze_setup(raw: dict[str, Any]) -> Setup:
    return Setup(copy=tuple(raw.get("copy", ())), commands=tuple(command(c) for c in raw.get("commands", ())),
                 timeout=float(raw.get("timeout", defaults.SETUP_TIMEOUT)))
