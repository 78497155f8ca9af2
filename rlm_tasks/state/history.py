"""artifacts/attempts/<worker_id>.json: every attempt of one task, written as it starts and as it ends.

This is the durable record the budget counts (workers, attempts) and the
status reads (`interrupted`): logs are compressed or removed by `rlm archive`
and provenance only keeps the attempts of a task's accepted report, so
neither can answer "how many worker processes did this run start".
One small file per task keeps each write O(1) in the size of the plan.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from typing import Any

from rlm_tasks import jsonio
from rlm_tasks.clock import iso
from rlm_tasks.layout import RunLayout

FORMAT_VERSION = 1
RUNNING = "running"  # an attempt whose end was never recorded (its orchestrator died) keeps this outcome
INTERRUPTED = "interrupted"
CONFLICT = "conflict"  # an isolated attempt's change did not merge (run/isolation); kept until a person decides
_ATTEMPT_LOG = re.compile(r"^(?P<id>.+)\.attempt-(?P<n>\d+)\.log(?:\.gz)?$")
# one task's file is read, changed and written whole under one of these (by its worker id): never one
# lock for every task, which made each finishing task wait for the others' writes
_locks = [threading.Lock() for _ in range(64)]


def history_rel(layout: RunLayout, worker_id: str) -> str:
    return layout.attempts_rel(worker_id)


def _load(layout: RunLayout, worker_id: str) -> dict[str, Any]:
    try:
        data = jsonio.read_json(layout.abs(history_rel(layout, worker_id)), default={})
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def read(layout: RunLayout, worker_id: str) -> list[dict[str, Any]]:
    """The task's attempts in the order they started; [] when none was recorded or the file is unreadable."""
    attempts = _load(layout, worker_id).get("attempts")
    return [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []


def _lock_of(worker_id: str) -> threading.Lock:
    return _locks[hash(worker_id) % len(_locks)]


def record(layout: RunLayout, run_id: str, worker_id: str, entry: dict[str, Any], durable: bool = True) -> None:
    """Add or replace (same attempt number) one attempt's record; an attempt starting ends a not-started mark.

    `durable=False` skips the fsync, for a record that is on disk elsewhere (or need not survive a power loss)."""
    with _lock_of(worker_id):  # two threads never run the same task, but keep the read-modify-write whole anyway
        attempts = [a for a in read(layout, worker_id) if a.get("attempt") != entry["attempt"]]
        attempts.append(entry)
        attempts.sort(key=lambda a: int(a.get("attempt") or 0))
        # jsonio.indented: the same bytes as write_json, from the C encoder (write_json's indented encoder is
        # pure Python: twice per task, a visible part of a first run's CPU)
        jsonio.write_text_atomic(layout.abs(history_rel(layout, worker_id)), jsonio.indented(
            {"version": FORMAT_VERSION, "run_id": run_id, "worker_id": worker_id, "attempts": attempts}) + "\n",
            durable)


def mark_not_started(layout: RunLayout, run_id: str, worker_id: str, signal_name: str) -> None:
    """A signal ended the run before this task's next attempt started: it is `interrupted` until one starts.

    No attempt is recorded: the budget counts attempts, and none ran.
    """
    with _lock_of(worker_id):
        jsonio.write_json(layout.abs(history_rel(layout, worker_id)),
                          {"version": FORMAT_VERSION, "run_id": run_id, "worker_id": worker_id,
                           "attempts": read(layout, worker_id),
                           "not_started": {"interrupted_by": signal_name, "at": iso()}})


def not_started(layout: RunLayout, worker_id: str) -> dict[str, Any] | None:
    """The mark `mark_not_started` left, or None."""
    mark = _load(layout, worker_id).get("not_started")
    return mark if isinstance(mark, dict) else None


def last(layout: RunLayout, worker_id: str) -> dict[str, Any] | None:
    attempts = read(layout, worker_id)
    return attempts[-1] if attempts else None


def every_task(layout: RunLayout) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(worker id, its attempts) for every task with an attempt record, in no particular order."""
    folder = layout.abs(layout.attempts_rel("x")).parent
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            worker_id = name[: -len(".json")]
            yield worker_id, read(layout, worker_id)


def highest_attempts(layout: RunLayout, logs: bool = True) -> dict[str, int]:
    """Highest attempt number per worker id: attempt histories (committed: the same on every machine) and,
    with `logs`, this machine's logs of runs from before them (attempt numbers must not reuse a log's)."""
    found: dict[str, int] = {}
    for worker_id, attempts in every_task(layout):
        numbers = [int(a.get("attempt") or 0) for a in attempts]
        if numbers:
            found[worker_id] = max(numbers)
    logs_dir = layout.abs(layout.logs_rel)
    if logs and logs_dir.is_dir():
        for name in os.listdir(logs_dir):
            match = _ATTEMPT_LOG.match(name)
            if match:
                found[match["id"]] = max(found.get(match["id"], 0), int(match["n"]))
    return found


def started_count(layout: RunLayout) -> tuple[int, int]:
    """(tasks started at least once, attempts started) over the run's whole life, from committed records."""
    highest = highest_attempts(layout, logs=False)
    return len(highest), sum(highest.values())
