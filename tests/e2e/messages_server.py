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

import gzip
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    from .responses_server import DEFAULT_REPORT, FINAL_TEXT, NO_REPORT_TEXT, find_envelope, write_command
except ImportError:  # imported as a top-level module (tests/e2e on sys.path)
    from responses_server import DEFAULT_REPORT, FINAL_TEXT, NO_REPORT_TEXT, find_envelope, write_command


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

    def script(record: dict[str, Any]) -> Turn:
        chosen = scripts.get((record["envelope"] or {}).get("worker_id", ""), default)
        return (SCRIPTS[chosen] if isinstance(chosen, str) else chosen)(record)

    return script


def sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


class MessagesServer:
    """Scripted Anthropic Messages API on 127.0.0.1:<free port>; ``base_url`` has no ``/v1``."""

    def __init__(self, script: str | Script = "report", log_path: str | Path | None = None) -> None:
        self.fail_status = {"fail": 400, "error": 500}.get(script) if isinstance(script, str) else None
        self.hang = script == "hang"
        self.script: Script | None = None if self.fail_status or self.hang else (
            SCRIPTS[script] if isinstance(script, str) else script
        )
        self._stopping = threading.Event()
        self.log_path = Path(log_path) if log_path else None
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[dict[str, Any]] = []
        self.side_requests: list[dict[str, Any]] = []
        self.other_requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MessagesServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="messages-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases "hang" handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> MessagesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def for_worker(self, worker_id: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if (r["envelope"] or {}).get("worker_id") == worker_id]

    def _record(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The record of an agent request, or None for a side request (no tools offered)."""
        tools = [tool.get("name", "?") for tool in body.get("tools") or []]
        with self._lock:
            if not tools:
                self.side_requests.append({"path": path, "model": body.get("model"), "body": body})
                return None
            prompt, envelope = find_envelope(user_texts(body))
            results = tool_results(body)
            record = {
                "n": len(self.requests) + 1,
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
            self.requests.append(record)
            self.bodies.append(body)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(record) + "\n")
        return record

    @staticmethod
    def _message(n: int, turn: Turn) -> tuple[list[dict[str, Any]], str]:
        if turn.tool is not None:
            name, tool_input = turn.tool
            return [{"type": "tool_use", "id": f"toolu_{n:04d}", "name": name, "input": tool_input}], "tool_use"
        return [{"type": "text", "text": turn.text or ""}], "end_turn"

    @staticmethod
    def _events(n: int, model: str, content: list[dict[str, Any]], stop_reason: str) -> list[dict[str, Any]]:
        usage = {"input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        events: list[dict[str, Any]] = [{"type": "message_start", "message": {
            "id": f"msg_{n:04d}", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage}}]
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
             "usage": {"output_tokens": 20}},
            {"type": "message_stop"},
        ]
        return events

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, kind: str, message: str) -> None:
                self._json(status, {"type": "error", "error": {"type": kind, "message": message}})

            def _hang(self, first_event: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(sse(first_event))
                self.wfile.flush()
                server._stopping.wait()
                self.close_connection = True

            def do_GET(self) -> None:
                with server._lock:
                    server.other_requests.append(("GET", self.path))
                self._error(404, "not_found_error", f"no route {self.path}")

            def do_HEAD(self) -> None:
                with server._lock:
                    server.other_requests.append(("HEAD", self.path))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                encoding = (self.headers.get("Content-Encoding") or "identity").lower()
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding != "identity":  # e.g. codex's zstd request compression (OpenAI-auth only)
                    self.send_error(415, f"scripted server cannot decode Content-Encoding {encoding}")
                    return
                path = self.path.split("?")[0]
                if path.endswith("/messages/count_tokens"):
                    with server._lock:
                        server.other_requests.append(("POST", self.path))
                    self._json(200, {"input_tokens": 100})
                    return
                if not path.endswith("/messages"):
                    with server._lock:
                        server.other_requests.append(("POST", self.path))
                    self._error(404, "not_found_error", f"no route {self.path}")
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._error(400, "invalid_request_error", "body is not JSON")
                    return
                model = body.get("model") or "unknown"
                record = server._record(path, body)
                if record is None:
                    turn = Turn(text="Scripted side answer.")
                    n = 0
                elif server.hang:
                    self._hang(server._events(record["n"], model, [], "end_turn")[0])
                    return
                elif server.script is None:
                    kind = "invalid_request_error" if server.fail_status == 400 else "api_error"
                    self._error(server.fail_status or 500, kind, "scripted failure")
                    return
                else:
                    n = record["n"]
                    try:
                        turn = server.script(record)
                    except Exception as exc:  # surface script bugs, not a dead socket
                        self._error(500, "api_error", f"script error: {exc!r}")
                        return
                content, stop_reason = server._message(n, turn)
                if not body.get("stream"):
                    self._json(200, {"id": f"msg_{n:04d}", "type": "message", "role": "assistant", "model": model,
                                     "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                                     "usage": {"input_tokens": 100, "output_tokens": 20}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for event in server._events(n, model, content, stop_reason):
                    self.wfile.write(sse(event))
                    self.wfile.flush()
                self.close_connection = True

        return Handler
