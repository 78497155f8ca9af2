"""What an attempt cost in tokens, read from what the agent printed.

- codex runs as `codex exec --json`: JSONL events on stdout; `turn.completed` carries the usage.
- claude runs with `--output-format stream-json --verbose`: the final `result` event carries
  `modelUsage` (per model), `usage` and `total_cost_usd`.
- a `command` agent may write `$RLM_USAGE_PATH` (schemas/usage_file.schema.json).

The events go to a file next to the attempt's log; the log itself gets one readable line per
event (`human_line`), so it stays something a person can read.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from rlm_tasks.config import schema
from rlm_tasks.state.usage import MAX_COST_USD, MAX_TOKENS, Usage

USAGE_FILE_CAP = 64 * 1024
SHOWN_CHARS = 300  # of a message or command in the human log; the events file keeps everything


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS else 0


# Only lines that can carry usage are parsed: a long session's events file is mostly tool output.
USAGE_MARKERS = {"codex": (b"turn.completed",), "claude": (b'"result"', b'"assistant"')}


def _events(path: Path, markers: tuple[bytes, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        with path.open("rb") as lines:
            for line in lines:  # one line at a time: the file can be large
                if not any(marker in line for marker in markers):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:  # a line cut short by a kill, or something not JSON
                    continue
                if isinstance(event, dict):
                    out.append(event)
    except OSError:
        return []
    return out


def from_events(kind: str, path: Path) -> Usage | None:
    """The attempt's usage from its events file; None when the agent reported none (e.g. killed early)."""
    events = _events(path, USAGE_MARKERS.get(kind, ()))
    return _codex(events) if kind == "codex" else _claude(events) if kind == "claude" else None


def _codex(events: list[dict[str, Any]]) -> Usage | None:
    found = [e["usage"] for e in events if e.get("type") == "turn.completed" and isinstance(e.get("usage"), dict)]
    if not found:
        return None
    return Usage(
        input_tokens=sum(_int(u.get("input_tokens")) for u in found),
        cached_input_tokens=sum(_int(u.get("cached_input_tokens")) for u in found),
        output_tokens=sum(_int(u.get("output_tokens")) for u in found),
        reasoning_tokens=sum(_int(u.get("reasoning_output_tokens")) for u in found),
    )


def _claude(events: list[dict[str, Any]]) -> Usage | None:
    results = [e for e in events if e.get("type") == "result"]
    if results:
        result = results[-1]
        cost = result.get("total_cost_usd")
        cost = float(cost) if isinstance(cost, (int, float)) and 0 <= cost <= MAX_COST_USD else None
        per_model = result.get("modelUsage")
        if isinstance(per_model, dict) and per_model:  # every model it called, side requests included
            models = [m for m in per_model.values() if isinstance(m, dict)]
            return Usage(
                input_tokens=sum(_int(m.get("inputTokens")) + _int(m.get("cacheReadInputTokens"))
                                 + _int(m.get("cacheCreationInputTokens")) for m in models),
                cached_input_tokens=sum(_int(m.get("cacheReadInputTokens")) for m in models),
                output_tokens=sum(_int(m.get("outputTokens")) for m in models),
                reasoning_tokens=sum(_int(m.get("thinkingTokens")) for m in models),
                cost_usd=cost,
                model=next(iter(per_model)) if len(per_model) == 1 else None,
            )
        if isinstance(result.get("usage"), dict):
            return _claude_usage([result["usage"]], cost)
    # no result (ended early): what the messages it got said, each message once
    by_message: dict[str, dict[str, Any]] = {}
    for event in events:
        message = event.get("message")
        if event.get("type") == "assistant" and isinstance(message, dict) and isinstance(message.get("usage"), dict):
            by_message[str(message.get("id"))] = message["usage"]
    return _claude_usage(list(by_message.values()), None) if by_message else None


def _claude_usage(usages: list[dict[str, Any]], cost: float | None) -> Usage:
    cached = sum(_int(u.get("cache_read_input_tokens")) for u in usages)
    return Usage(
        input_tokens=sum(_int(u.get("input_tokens")) + _int(u.get("cache_creation_input_tokens")) for u in usages)
        + cached,
        cached_input_tokens=cached,
        output_tokens=sum(_int(u.get("output_tokens")) for u in usages),
        cost_usd=cost,
    )


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


# ---- the human log ---------------------------------------------------------------------------------------

def _short(text: Any) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 3] + "..."


def human_line(kind: str, line: bytes) -> bytes | None:
    """One readable log line for an event line (None: nothing worth a line); not-JSON lines pass through."""
    try:
        event = json.loads(line)
    except ValueError:
        return line if line.endswith(b"\n") else line + b"\n"
    if not isinstance(event, dict):
        return None
    text = _codex_line(event) if kind == "codex" else _claude_line(event)
    return None if text is None else (text + "\n").encode("utf-8", "replace")


def _codex_line(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    item: dict[str, Any] = event["item"] if isinstance(event.get("item"), dict) else {}
    if kind == "item.completed":
        what = item.get("type")
        if what == "agent_message":
            return f"[agent] {_short(item.get('text', ''))}"
        if what == "reasoning":
            return f"[reasoning] {_short(item.get('text', ''))}"
        if what == "command_execution":
            return f"[exec] {_short(item.get('command', ''))} (exit {item.get('exit_code')})"
        if what == "file_change":
            changes: list[Any] = item["changes"] if isinstance(item.get("changes"), list) else []
            return "[files] " + _short(", ".join(str(c.get("path")) for c in changes if isinstance(c, dict)))
        if what == "error":
            return f"[error] {_short(item.get('message', ''))}"
        return None
    if kind == "turn.completed" and isinstance(event.get("usage"), dict):
        usage = event["usage"]
        return (f"[usage] input {usage.get('input_tokens')} (cached {usage.get('cached_input_tokens')}), "
                f"output {usage.get('output_tokens')}")
    if kind in ("turn.failed", "error"):
        error: dict[str, Any] = event["error"] if isinstance(event.get("error"), dict) else event
        return f"[error] {_short(error.get('message', ''))}"
    return None


def _claude_line(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    if kind == "system" and event.get("subtype") == "init":
        return f"[session] model {event.get('model')}"
    if kind == "assistant" and isinstance(event.get("message"), dict):
        lines = []
        for block in event["message"].get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                lines.append(f"[agent] {_short(block.get('text', ''))}")
            elif block.get("type") == "tool_use":
                lines.append(f"[tool] {block.get('name')} {_short(json.dumps(block.get('input'), ensure_ascii=False))}")
        return "\n".join(lines) or None
    if kind == "result":
        cost = event.get("total_cost_usd")
        return (f"[result] {event.get('subtype')}, {event.get('num_turns')} turns"
                + (f", cost ${cost}" if cost is not None else "") + f": {_short(event.get('result', ''))}")
    return None
