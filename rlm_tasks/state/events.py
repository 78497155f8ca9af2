"""The run's event log: one JSON line per event in `.rlm/local/runs/<run_id>/events.jsonl`.

Machine-local, like logs and inflight.json: events carry pids, hosts and
clocks, and a no-op `doit` appends a run's start and end, which would dirty a
clone's tree. The committed attempt records (state.history) stay the run's
record; the log adds what they do not keep (retries with their waits, stall
detections, gates, merges, budget stops) and can be followed while a run goes.

Writing is one `write` of one line to a file opened with O_APPEND: no lock, no
fsync, O(1) per event; lines from threads or processes do not interleave. A
line torn by a crash is skipped when read. Emitting never fails a run.
"""

from __future__ import annotations

import enum
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rlm_tasks.layout import RunLayout
from rlm_tasks.procs import hostname
from rlm_tasks.render import escape
from rlm_tasks.vocabulary import is_failure

FORMAT_VERSION = 1
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


class Kind(str, enum.Enum):
    RUN_START = "run_start"
    RUN_END = "run_end"
    ATTEMPT_START = "attempt_start"
    ATTEMPT_END = "attempt_end"  # `outcome`: the attempt records' outcome (schemas/attempts.schema.json)
    RETRY = "retry"
    STALL = "stall"
    ADOPT = "adopt"
    USAGE = "usage"
    BUDGET_STOP = "budget_stop"
    GATE = "gate"
    MERGE = "merge"


KINDS = frozenset(k.value for k in Kind)


def events_rel(layout: RunLayout) -> str:
    return f"{layout.local_run_rel}/events.jsonl"


def events_path(layout: RunLayout) -> Path:
    return layout.abs(events_rel(layout))


def emit(layout: RunLayout, kind: Kind, **fields: Any) -> None:
    """Append one event. Fields are JSON values (None is left out); `worker_id` and `attempt` name an attempt."""
    record = {key: value for key, value in fields.items() if value is not None}
    record.update(v=FORMAT_VERSION, kind=kind.value, run_id=layout.run_id, at=round(time.time(), 3),
                  pid=os.getpid())
    if kind is Kind.RUN_START:
        record["host"] = hostname()
    line = (json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()
    path = events_path(layout)
    try:
        try:
            fd = os.open(path, _FLAGS, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, _FLAGS, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass  # the log is a view: a full disk or a symlink in its place must not fail the run


def parse(line: bytes | str) -> dict[str, Any] | None:
    """One event, or None for a torn, foreign or malformed line."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") not in KINDS or not isinstance(data.get("at"), (int, float)):
        return None
    return data


def read(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The events from byte `offset` on, and the offset after the last whole line (for --follow)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)  # a link in its place is never read through
    except OSError:
        return [], offset
    with os.fdopen(fd, "rb") as handle:
        try:
            handle.seek(offset)
            data = handle.read()
        except OSError:  # a directory in its place
            return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written is read next time
    found = [event for raw in data[:end].splitlines() if (event := parse(raw)) is not None]
    return found, offset + end


def read_all(layout: RunLayout) -> list[dict[str, Any]]:
    return read(events_path(layout))[0]


# ---- replay: the counts `rlm status` shows, from events alone ----------------------------------------------

_STATE_OF_OUTCOME = {"ok": "fresh", "adopted": "fresh", "partial": "partial", "interrupted": "interrupted",
                     "running": "interrupted"}


def replay(events: Iterable[dict[str, Any]], worker_ids: Iterable[str]) -> dict[str, int]:
    """Each task's state as its last attempt left it: ok → fresh, partial, interrupted, a failure → failed (as
    `rlm status` says), never attempted → missing; an attempt started and not ended → running."""
    last: dict[str, str] = {}
    for event in events:
        worker_id = event.get("worker_id")
        if not isinstance(worker_id, str):
            continue
        if event["kind"] == Kind.ATTEMPT_START.value:
            last[worker_id] = "running"
        elif event["kind"] == Kind.ATTEMPT_END.value:
            outcome = str(event.get("outcome"))
            last[worker_id] = "failed" if is_failure(outcome) else _STATE_OF_OUTCOME.get(outcome, "missing")
        elif event["kind"] == Kind.RUN_END.value:
            last = {w: ("interrupted" if s == "running" else s) for w, s in last.items()}
    return dict(Counter(last.get(w, "missing") for w in worker_ids))


# ---- what `rlm events` prints -------------------------------------------------------------------------------

def _when(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def line(event: dict[str, Any]) -> str:
    """One event for a person: time, kind, the attempt it concerns, then the other fields as key=value."""
    kind = str(event["kind"])
    who = ""
    if "worker_id" in event:
        who = escape.one_line(event["worker_id"], 80)
        if "attempt" in event:
            who += f"#{event['attempt']}"
    skip = {"v", "kind", "run_id", "at", "worker_id", "attempt"}
    rest = " ".join(f"{key}={escape.one_line(event[key], 160)}" for key in sorted(event) if key not in skip)
    return " ".join(part for part in (_when(float(event["at"])), f"{kind:<13}", who, rest) if part)


def lines(events: Iterable[dict[str, Any]], as_json: bool) -> Iterator[str]:
    for event in events:
        yield json.dumps(event, sort_keys=True) if as_json else line(event)
