"""The run's two vocabularies, each defined once: a task's state and how an attempt ended.

schemas/vocabulary.schema.json states the same values (`$defs/task_state`, `$defs/attempt_outcome`) and
every schema refers to it; tests/test_vocabulary.py keeps the two equal. A new outcome (say, a gate that
failed) is one member here and one line in that schema.
"""

from __future__ import annotations

import enum


class State(str, enum.Enum):
    """A task's state, as status, reduce_state.json, final.json and the reporters say it."""

    # a task's own files (state.provenance): report and digests
    FRESH = "fresh"
    STALE = "stale"
    MISSING = "missing"
    INVALID = "invalid"
    # seen from outside a task's own files (state.status.resolve): its last attempt failed, a worker is on it
    # now, its last attempt was cut short by a signal, or its report says it stopped early
    FAILED = "failed"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    PARTIAL = "partial"
    CONFLICT = "conflict"  # an isolated attempt's change conflicted with the main tree: kept for a person


class Outcome(str, enum.Enum):
    """How one attempt ended (artifacts/attempts/<worker_id>.json, provenance's attempt lists)."""

    RUNNING = "running"  # not ended yet, or its orchestrator died before recording the end
    OK = "ok"
    PARTIAL = "partial"  # a valid report with a Self-termination section
    ADOPTED = "adopted"  # a worker left by a dead orchestrator, waited for and accepted
    INTERRUPTED = "interrupted"  # a signal ended the run: never a failure of the task
    # failures: the task has no accepted report from this attempt
    NO_REPORT = "no_report"
    INVALID_REPORT = "invalid_report"
    EXIT = "exit"  # the agent exited non-zero
    TIMEOUT = "timeout"
    STALLED = "stalled"
    OVER_CAP = "over_cap"  # a log or output cap was exceeded
    START_ERROR = "start_error"  # the agent could not be started
    # an attempt in its own worktree (run/isolation)
    SETUP_FAILED = "setup_failed"  # the worktree could not be made ready
    DRIFT = "drift"  # it changed files outside its owns
    NO_CHANGES = "no_changes"  # expects_changes is set and it changed nothing
    GATE_FAILED = "gate_failed"  # the contract's checks failed on its change
    CONFLICT = "conflict"  # its change did not merge: kept for a person (the task's state is `conflict`)
    DISCARDED = "discarded"  # a person discarded a conflicted change (`rlm discard`)


SUCCESSES = frozenset({Outcome.OK, Outcome.PARTIAL, Outcome.ADOPTED})
# a conflict is its own state, waiting for a person; a discarded one was their decision
NOT_FAILURES = SUCCESSES | {Outcome.RUNNING, Outcome.INTERRUPTED, Outcome.CONFLICT, Outcome.DISCARDED}


def is_failure(outcome: object) -> bool:
    """An attempt that ended without an accepted report, for a reason of its own (not a signal)."""
    try:
        return Outcome(outcome) not in NOT_FAILURES
    except ValueError:  # written by a newer rlm: not one of ours to judge
        return False


class Cause(str, enum.Enum):
    """Why a failed attempt failed, read by its agent kind from the agent's structured events (agents/*.py
    `failure`, never log text), or `agent_unavailable` when it could not be started at all."""

    NETWORK = "network"
    AUTH = "auth"
    QUOTA = "quota"
    MODEL = "model"
    RATE_LIMIT = "rate_limit"
    CONTEXT = "context"
    SERVER = "server"
    AGENT_UNAVAILABLE = "agent_unavailable"


CAUSE_TEXT = {
    Cause.NETWORK: "model endpoint unreachable",
    Cause.AUTH: "authentication failed",
    Cause.QUOTA: "quota or billing exhausted",
    Cause.MODEL: "unknown model",
    Cause.RATE_LIMIT: "rate limited",
    Cause.CONTEXT: "context too long",
    Cause.SERVER: "model server error",
    Cause.AGENT_UNAVAILABLE: "agent could not be started",
}
