"""A scripted Gemini API server on 127.0.0.1 for running the real `gemini` CLI offline.

Standard library only. The CLI talks to it with ``GOOGLE_GEMINI_BASE_URL`` (and ``GEMINI_API_KEY``,
with ``security.auth.selectedType: gemini-api-key`` in its settings: the base URL alone selects a
"gateway" auth that a headless run refuses). ``POST /v1beta/models/<model>:streamGenerateContent``
answers with a server-sent-event stream of one ``GenerateContentResponse`` (``data:`` lines only, as
Google sends them); ``:generateContent`` with one JSON response. Scripts, as in responses_server:

- ``"report"``: turn 1 calls the CLI's ``write_file`` tool with the envelope's ``report_path`` and a
  narrative report; the request carrying the functionResponse gets a short final text.
- ``"report_shell"``: the same through ``run_shell_command`` (a quoted heredoc).
- ``"no_report"``: a final text at once, nothing written.
- ``"fail"``: HTTP 400 (``INVALID_ARGUMENT``); ``"error"``: HTTP 500; ``"hang"``: the stream starts, then
  nothing until ``stop()``.

Records: ``{"n", "path", "model", "prompt", "envelope", "tools", "has_tool_result", "tool_result"}``.
Requests offering no tools (the CLI's side questions: next speaker, titles) get a plain text answer and
land in ``.side_requests``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

try:
    from . import scripted_server
    from .responses_server import DEFAULT_REPORT, FINAL_TEXT, NO_REPORT_TEXT, find_envelope, write_command
    from .scripted_server import ScriptedServer
except ImportError:  # imported as a top-level module (tests/e2e on sys.path)
    import scripted_server
    from responses_server import DEFAULT_REPORT, FINAL_TEXT, NO_REPORT_TEXT, find_envelope, write_command
    from scripted_server import ScriptedServer

MODEL_IN_PATH = re.compile(r"/models/([^/:]+):")


class Turn:
    """One scripted answer: a final text, or a function call (name, args)."""

    def __init__(self, *, text: str | None = None, tool: tuple[str, dict[str, Any]] | None = None) -> None:
        self.text = text
        self.tool = tool


Script = Callable[[dict[str, Any]], Turn]


def _parts(body: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [part for content in body.get("contents") or [] if content.get("role") == role
            for part in content.get("parts") or [] if isinstance(part, dict)]


def user_texts(body: dict[str, Any]) -> list[str]:
    return [str(part["text"]) for part in _parts(body, "user") if "text" in part]


def tool_results(body: dict[str, Any]) -> list[str]:
    return [json.dumps(part["functionResponse"].get("response")) for part in _parts(body, "user")
            if isinstance(part.get("functionResponse"), dict)]


def tool_names(body: dict[str, Any]) -> list[str]:
    return [str(declaration.get("name")) for tool in body.get("tools") or []
            for declaration in tool.get("functionDeclarations") or []]


def report_script(report: str = DEFAULT_REPORT, tool: str = "write_file") -> Script:
    def script(record: dict[str, Any]) -> Turn:
        if record["has_tool_result"]:
            return Turn(text=FINAL_TEXT)
        envelope = record["envelope"] or {}
        path = envelope.get("report_path")
        if not path:
            return Turn(text="No envelope with a report_path in the prompt; nothing written.")
        text = report.format_map({k: envelope.get(k, "") for k in ("worker_id", "run_id", "mode")})
        if tool == "run_shell_command":
            return Turn(tool=("run_shell_command", {"command": write_command(path, text)}))
        return Turn(tool=("write_file", {"file_path": path, "content": text}))

    return script


def no_report_script(record: dict[str, Any]) -> Turn:
    return Turn(text=NO_REPORT_TEXT)


SCRIPTS: dict[str, Script] = {
    "report": report_script(),
    "report_shell": report_script(tool="run_shell_command"),
    "no_report": no_report_script,
}


def by_worker(scripts: dict[str, str | Script], default: str | Script = "report") -> Script:
    return scripted_server.by_worker(SCRIPTS, scripts, default)


class GeminiServer(ScriptedServer):
    """Scripted Gemini API on 127.0.0.1:<free port>; ``base_url`` has no ``/v1beta``."""

    scripts = SCRIPTS
    endpoint = "enerateContent"  # :streamGenerateContent and :generateContent (the path's `:method` suffix)
    canned: ClassVar[dict[tuple[str, str], dict[str, Any] | None]] = {
        ("POST", ":countTokens"): {"totalTokens": 100},
    }
    side_turn = Turn(text="Scripted side answer.")
    statuses: ClassVar[dict[int, str]] = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 500: "INTERNAL"}

    def __init__(self, script: str | Script = "report", log_path: str | Path | None = None) -> None:
        super().__init__(script, log_path)
        self.side_requests: list[dict[str, Any]] = []
        self._request = threading.local()  # each request has its handler thread: whether it asked for a stream

    def describe(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self._request.streamed = ":stream" in path
        found = MODEL_IN_PATH.search(path)
        model = found.group(1) if found else None
        tools = tool_names(body)
        if not tools:
            with self._lock:
                self.side_requests.append({"path": path, "model": model, "body": body})
            return None
        prompt, envelope = find_envelope(user_texts(body))
        results = tool_results(body)
        return {"path": path, "model": model, "prompt": prompt, "envelope": envelope, "tools": tools,
                "has_tool_result": bool(results), "tool_result": results[-1] if results else None}

    def error_body(self, status: int, message: str, code: str | None = None) -> dict[str, Any]:
        return {"error": {"code": status, "message": message, "status": self.statuses.get(status, "UNKNOWN")}}

    def usage_sent(self, n: int) -> dict[str, Any]:
        u = scripted_server.usage_for(n)  # promptTokenCount includes the cached tokens, as the API's does
        return {"promptTokenCount": u["input"], "cachedContentTokenCount": u["cached"],
                "candidatesTokenCount": u["output"], "thoughtsTokenCount": u["reasoning"],
                "totalTokenCount": u["input"] + u["output"] + u["reasoning"]}

    def _response(self, n: int, body: dict[str, Any], turn: Turn | None) -> dict[str, Any]:
        if turn is None:
            parts: list[dict[str, Any]] = [{"text": ""}]
        elif turn.tool is not None:
            name, args = turn.tool
            parts = [{"functionCall": {"name": name, "args": args}}]
        else:
            parts = [{"text": turn.text or ""}]
        with self._lock:
            found = MODEL_IN_PATH.search(self.requests[n - 1]["path"]) if n else None
        return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": self.usage_sent(n) if n else {"promptTokenCount": 0, "candidatesTokenCount": 0,
                                                                "totalTokenCount": 0},
                "modelVersion": found.group(1) if found else "scripted",
                "responseId": f"resp_{n:04d}"}

    def unstreamed(self, n: int, body: dict[str, Any], turn: Turn) -> dict[str, Any] | None:
        return None if getattr(self._request, "streamed", True) else self._response(n, body, turn)

    def events(self, n: int, body: dict[str, Any], turn: Turn | None) -> list[dict[str, Any]]:
        return [self._response(n, body, turn)]

    def frame(self, event: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(event)}\r\n\r\n".encode()
