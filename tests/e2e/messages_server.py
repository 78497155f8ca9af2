"""A scripted Anthropic Messages API server on 127.0.0.1 for running the real `claude -p` offline.

Standard library only. `POST /v1/messages` answers with a server-sent-event stream shaped like the
real API (message_start, content_block_start/delta/stop, message_delta, message_stop), or with one
JSON message when the request has no ``"stream": true``. Scripts, as in responses_server:

- ``"report"``: turn 1 calls Claude Code's ``Write`` tool with the envelope's ``report_path`` and a
  narrative report; the request carrying the tool_result gets a short final text.
- ``"report_bash"``: the same through the ``Bash`` tool (a quoted heredoc).
- ``"no_report"``: a final text at once, nothing written.
- ``"fail"``: HTTP 400 (``invalid_request_error``): Claude Code exits 1 after a few immediate
  fallback re-sends (no backoff), printing ``API Error: 400 scripted failure`` on stdout.
- ``"error"``: HTTP 500 (Claude Code retries with backoff; ``CLAUDE_CODE_MAX_RETRIES=0`` fails fast).
- ``"hang"``: starts the stream, then sends nothing until ``stop()`` (for timeout/kill tests).

Custom scripts as in responses_server: ``report_script(text, tool)``, ``command_script(cmd)`` (Bash),
``by_worker({...})``, or any callable from the request record to a ``Turn``.

Only the agent's own requests (those offering tools) are scripted and counted in ``.requests``;
side requests Claude Code makes with a small model and no tools (titles, quota probes) get a plain
text answer and land in ``.side_requests``. Records: ``{"n", "path", "model", "effort", "thinking",
"prompt", "envelope", "tools", "has_tool_result", "tool_result"}``; ``effort`` is
``output_config.effort`` (set by ``--effort`` on models that support it, e.g. not claude-sonnet-4-5).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

try:
    from rlm_tasks.responses_server import DEFAULT_REPORT, FINAL_TEXT, NO_REPORT_TEXT, find_envelope, write_command

    from . import scripted_server
    from .scripted_server import ScriptedServer
except ImportError:  # imported as a top-level module (tests/e2e on sys.path)
    import scripted_server
    from responses_server import DEFAULT_REPORT, FINAL_TEXT, NO_REPORT_TEXT, find_envelope, write_command
    from scripted_server import ScriptedServer


class Turn:
    """One scripted answer: a final text, or a tool_use (name, input)."""

    def __init__(self, *, text: str | None = None, tool: tuple[str, dict[str, Any]] | None = None) -> None:
        self.text = text
        self.tool = tool


Script = Callable[[dict[str, Any]], Turn]


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or [] if isinstance(block, dict)]


def user_texts(body: dict[str, Any]) -> list[str]:
    texts = []
    for message in body.get("messages") or []:
        if message.get("role") != "user":
            continue
        texts += [block.get("text", "") for block in _blocks(message.get("content")) if block.get("type") == "text"]
    return texts


def tool_results(body: dict[str, Any]) -> list[str]:
    results = []
    for message in body.get("messages") or []:
        for block in _blocks(message.get("content")):
            if block.get("type") != "tool_result":
                continue
            content = block.get("content")
            if isinstance(content, list):
                content = "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
            results.append(("ERROR: " if block.get("is_error") else "") + str(content))
    return results


def report_script(report: str = DEFAULT_REPORT, tool: str = "Write") -> Script:
    def script(record: dict[str, Any]) -> Turn:
        if record["has_tool_result"]:
            return Turn(text=FINAL_TEXT)
        envelope = record["envelope"] or {}
        path = envelope.get("report_path")
        if not path:
            return Turn(text="No envelope with a report_path in the prompt; nothing written.")
        text = report.format_map({k: envelope.get(k, "") for k in ("worker_id", "run_id", "mode")})
        if tool == "Bash":
            return Turn(tool=("Bash", {"command": write_command(path, text), "description": "Write the report"}))
        return Turn(tool=("Write", {"file_path": path, "content": text}))

    return script


def command_script(command: str, final: str = FINAL_TEXT) -> Script:
    """Turn 1 runs ``command`` with the Bash tool; its result is in the next request's record."""

    def script(record: dict[str, Any]) -> Turn:
        if record["has_tool_result"]:
            return Turn(text=final)
        return Turn(tool=("Bash", {"command": command, "description": "Scripted command"}))

    return script


def no_report_script(record: dict[str, Any]) -> Turn:
    return Turn(text=NO_REPORT_TEXT)


SCRIPTS: dict[str, Script] = {
    "report": report_script(),
    "report_bash": report_script(tool="Bash"),
    "no_report": no_report_script,
}


def by_worker(scripts: dict[str, str | Script], default: str | Script = "report") -> Script:
    """Pick the script by the envelope's worker_id (``default`` for the others)."""
    return scripted_server.by_worker(SCRIPTS, scripts, default)


class MessagesServer(ScriptedServer):
    """Scripted Anthropic Messages API on 127.0.0.1:<free port>; ``base_url`` has no ``/v1``."""

    scripts = SCRIPTS
    endpoint = "/messages"
    canned: ClassVar[dict[tuple[str, str], dict[str, Any] | None]] = {
        ("POST", "/messages/count_tokens"): {"input_tokens": 100},
        ("HEAD", ""): None,
    }
    side_turn = Turn(text="Scripted side answer.")
    error_types: ClassVar[dict[int, str]] = {400: "invalid_request_error", 404: "not_found_error", 500: "api_error"}

    def __init__(self, script: str | Script = "report", log_path: str | Path | None = None) -> None:
        super().__init__(script, log_path)
        self.side_requests: list[dict[str, Any]] = []

    def describe(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Side requests (no tools offered) go to ``.side_requests``, not to the script."""
        tools = [tool.get("name", "?") for tool in body.get("tools") or []]
        if not tools:
            with self._lock:
                self.side_requests.append({"path": path, "model": body.get("model"), "body": body,
                                           "usage": self.usage_sent(0)})
            return None
        prompt, envelope = find_envelope(user_texts(body))
        results = tool_results(body)
        return {
            "path": path,
            "model": body.get("model"),
            "effort": (body.get("output_config") or {}).get("effort"),
            "thinking": body.get("thinking"),
            "prompt": prompt,
            "envelope": envelope,
            "tools": tools,
            "has_tool_result": bool(results),
            "tool_result": results[-1] if results else None,
        }

    def error_body(self, status: int, message: str, code: str | None = None) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.error_types[status], "message": message}}  # no code field

    @staticmethod
    def _message(n: int, turn: Turn | None) -> tuple[list[dict[str, Any]], str]:
        if turn is None:
            return [], "end_turn"
        if turn.tool is not None:
            name, tool_input = turn.tool
            return [{"type": "tool_use", "id": f"toolu_{n:04d}", "name": name, "input": tool_input}], "tool_use"
        return [{"type": "text", "text": turn.text or ""}], "end_turn"

    def usage_sent(self, n: int) -> dict[str, Any]:
        u = scripted_server.usage_for(n)  # input_tokens leaves out cache reads and writes, as the API does
        return {"input_tokens": u["input"], "cache_read_input_tokens": u["cached"],
                "cache_creation_input_tokens": u["cache_write"], "output_tokens": u["output"]}

    def unstreamed(self, n: int, body: dict[str, Any], turn: Turn) -> dict[str, Any] | None:
        if body.get("stream"):
            return None
        content, stop_reason = self._message(n, turn)
        return {"id": f"msg_{n:04d}", "type": "message", "role": "assistant", "model": body.get("model") or "unknown",
                "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                "usage": {"input_tokens": 100, "output_tokens": 20}}

    def events(self, n: int, body: dict[str, Any], turn: Turn | None) -> list[dict[str, Any]]:
        content, stop_reason = self._message(n, turn)
        sent = self.usage_sent(n)
        usage = {**{k: v for k, v in sent.items() if k != "output_tokens"}, "output_tokens": 1}
        events: list[dict[str, Any]] = [{"type": "message_start", "message": {
            "id": f"msg_{n:04d}", "type": "message", "role": "assistant", "model": body.get("model") or "unknown",
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}}]
        for index, block in enumerate(content):
            if block["type"] == "tool_use":
                events += [
                    {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
                    {"type": "content_block_delta", "index": index,
                     "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}},
                ]
            else:
                events += [
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                    {"type": "content_block_delta", "index": index,
                     "delta": {"type": "text_delta", "text": block["text"]}},
                ]
            events.append({"type": "content_block_stop", "index": index})
        events += [
            {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
             "usage": {"output_tokens": sent["output_tokens"]}},
            {"type": "message_stop"},
        ]
        return events
