"""What an attempt cost in tokens, and why a failed one failed, read from what the agent printed.

- an agent kind with an event stream (rlm_tasks/agents/) prints JSONL events to a file next to the
  attempt's log; its kind reads the usage (and, when it failed, the cause) from them;
- a `command` agent may write `$RLM_USAGE_PATH` (schemas/usage_file.schema.json).

The log itself gets one readable line per event (`human_line`), so it stays something a person can read.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from rlm_tasks.agents import kind_of
from rlm_tasks.agents.base import MAX_TOKENS, Failure, Usage, read_events
from rlm_tasks.config import schema
from rlm_tasks.state.usage import record_problem

USAGE_FILE_CAP = 64 * 1024


def from_events(kind: str, path: Path) -> Usage | None:
    """The attempt's usage from its events file; None when the agent reported none (e.g. killed early)."""
    agent = kind_of(kind)
    found = agent.usage(read_events(path, agent.USAGE_MARKERS))
    return None if found is None else _consistent(found)


def _consistent(usage: Usage) -> Usage:
    """An event stream's parts never above their wholes (cached input, reasoning), nor past MAX_TOKENS summed."""
    inputs, outputs = min(usage.input_tokens, MAX_TOKENS), min(usage.output_tokens, MAX_TOKENS)
    return usage._replace(input_tokens=inputs, output_tokens=outputs,
                          cached_input_tokens=min(usage.cached_input_tokens, inputs),
                          reasoning_tokens=min(usage.reasoning_tokens, outputs))


def failure_from_events(kind: str, path: Path) -> Failure | None:
    """Why the attempt failed, as its events say; None when they do not say."""
    agent = kind_of(kind)
    return agent.failure(read_events(path, agent.FAILURE_MARKERS))


def from_usage_file(path: Path) -> tuple[Usage | None, str | None]:
    """(usage, None), (None, None) when the command wrote no file, or (None, why the file is ignored)."""
    try:  # the worker made it: never through a link, never a FIFO or device, never more than the cap in memory
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path.name}: {'it is a symlink' if path.is_symlink() else exc.strerror or exc}"
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, f"{path.name} is not a regular file"
        raw = handle.read(USAGE_FILE_CAP + 1)
    if len(raw) > USAGE_FILE_CAP:
        return None, f"{path.name} is larger than 64 KiB"
    try:
        data = json.loads(raw, parse_constant=_refuse)
    except ValueError as exc:
        return None, f"{path.name} is not valid JSON: {exc}"
    problems = schema.check("usage_file", data)
    if problems:
        return None, f"{path.name}: {problems[0]}"
    inconsistent = record_problem(data)
    if inconsistent:
        return None, f"{path.name}: {inconsistent}"
    return Usage(
        input_tokens=data.get("input_tokens", 0),
        cached_input_tokens=data.get("cached_input_tokens", 0),
        output_tokens=data.get("output_tokens", 0),
        reasoning_tokens=data.get("reasoning_tokens", 0),
        cost_usd=float(data["cost_usd"]) if "cost_usd" in data else None,
        model=data.get("model"),
    ), None


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def human_line(kind: str, line: bytes) -> bytes | None:
    """One readable log line for an event line (None: nothing worth a line); not-JSON lines pass through."""
    try:
        event = json.loads(line)
    except ValueError:
        return line if line.endswith(b"\n") else line + b"\n"
    if not isinstance(event, dict):
        return None
    text = kind_of(kind).log_line(event)
    return None if text is None else (text + "\n").encode("utf-8", "replace")
