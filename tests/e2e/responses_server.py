"""A scripted OpenAI Responses API server on 127.0.0.1 for running the real `codex exec` offline.

Standard library only. `POST /v1/responses` answers with a server-sent-event stream shaped like the
real API (response.created, output_item.added/done, deltas, response.completed). Scripts:

- ``"report"``: turn 1 calls codex's shell tool to write a narrative report to the ``report_path``
  from the prompt's JSON envelope; the turn carrying the tool output gets a short final message.
- ``"no_report"``: answers with a final message at once and writes nothing.
- ``"fail"``: answers HTTP 400 with an error body (codex exits 1 at once: it does not retry 4xx).
- ``"error"``: answers HTTP 500 (codex retries 5xx with backoff; set the provider's
  ``request_max_retries=0`` to fail fast).
- ``"hang"``: starts the stream, then sends nothing until ``stop()`` (for timeout/kill tests).

A script may also be a callable taking the request record and returning a ``Turn``:
``report_script(text)`` writes a custom report (e.g. one missing a section), ``command_script(cmd)``
runs any shell command, ``by_worker({"w2": "no_report"})`` picks a script per envelope worker_id.
Scripts decide from the request alone (a tool output present means "second turn"), so one server
serves any number of concurrent workers.

Every request is recorded in ``.requests`` (and appended to ``log_path`` as JSONL when given):
``{"n", "path", "model", "effort", "prompt", "envelope", "tools", "has_tool_output", "tool_output"}``;
``effort`` is ``reasoning.effort`` (None when codex sends none), ``prompt`` the user message holding
the envelope. Raw bodies are in ``.bodies``.
"""

from __future__ import annotations

import gzip
import json
import re
import shlex
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ENVELOPE = re.compile(r"```json\s*\n(.*?)\n```", re.DOTALL)

DEFAULT_REPORT = """# {worker_id}

## What I did
Read the prompt and the envelope of run `{run_id}` and wrote this report with one tool call.

## Key findings
- A scripted model server drove the real agent CLI end to end.

## Evidence
- Envelope mode: `{mode}`.

## Open questions / risks
- None; this is a scripted model.

## Deferred opportunities
None identified.

## Contract Compliance
- Wrote exactly one report, to the envelope's `report_path`.
"""

FINAL_TEXT = "Report written."
NO_REPORT_TEXT = "I looked at the task and chose not to write a report."


def sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def user_texts(body: dict[str, Any]) -> list[str]:
    """Every input_text span of every user message, in order."""
    texts = []
    for item in body.get("input") or []:
        if item.get("type", "message") != "message" or item.get("role") != "user":
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for span in content or []:
            if span.get("type") == "input_text":
                texts.append(span.get("text", ""))
    return texts


def find_envelope(texts: list[str]) -> tuple[str, dict[str, Any] | None]:
    """The user text holding the ```json envelope (else the last user text), and the envelope."""
    for text in reversed(texts):
        for block in reversed(ENVELOPE.findall(text)):
            try:
                data = json.loads(block)
            except ValueError:
                continue
            if isinstance(data, dict) and "report_path" in data:
                return text, data
    return (texts[-1] if texts else ""), None


def tool_outputs(body: dict[str, Any]) -> list[str]:
    outputs = []
    for item in body.get("input") or []:
        if item.get("type") in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            outputs.append(output if isinstance(output, str) else json.dumps(output))
    return outputs


def tool_names(body: dict[str, Any]) -> list[str]:
    return [tool.get("name") or tool.get("type", "?") for tool in body.get("tools") or []]


def shell_call(tools: list[str], command: str) -> tuple[str, str]:
    """(tool name, JSON arguments) running ``command`` through whichever shell tool codex offered."""
    if "exec_command" in tools:
        return "exec_command", json.dumps({"cmd": command, "yield_time_ms": 10000})
    if "shell_command" in tools:
        return "shell_command", json.dumps({"command": command})
    if "shell" in tools:
        return "shell", json.dumps({"command": ["bash", "-lc", command]})
    raise LookupError(f"codex offered no shell tool; tools were {tools}")


def write_command(path: str, text: str) -> str:
    """A shell command writing ``text`` to ``path`` verbatim (quoted heredoc: no expansion).

    mkdir and cat are on separate lines: Claude Code's Bash permission parser rejects
    ``a && cat <<'EOF'`` ("Parser did not consume trailing input") in acceptEdits mode.
    """
    marker = "RLM_REPORT_EOF"
    assert marker not in text
    parent = shlex.quote(str(Path(path).parent))
    body = text if text.endswith("\n") else text + "\n"
    return f"mkdir -p {parent}\ncat > {shlex.quote(path)} <<'{marker}'\n{body}{marker}"


class Turn:
    """What the script answers to one request: either a tool call or a final message."""

    def __init__(self, *, text: str | None = None, call: tuple[str, str] | None = None) -> None:
        self.text = text
        self.call = call


Script = Callable[[dict[str, Any]], Turn]


def report_script(report: str = DEFAULT_REPORT) -> Script:
    def script(record: dict[str, Any]) -> Turn:
        if record["has_tool_output"]:
            return Turn(text=FINAL_TEXT)
        envelope = record["envelope"] or {}
        path = envelope.get("report_path")
        if not path:
            return Turn(text="No envelope with a report_path in the prompt; nothing written.")
        text = report.format_map({k: envelope.get(k, "") for k in ("worker_id", "run_id", "mode")})
        return Turn(call=shell_call(record["tools"], write_command(path, text)))

    return script


def command_script(command: str, final: str = FINAL_TEXT) -> Script:
    """Turn 1 runs ``command`` through the shell tool; the tool output is in the next request's record."""

    def script(record: dict[str, Any]) -> Turn:
        if record["has_tool_output"]:
            return Turn(text=final)
        return Turn(call=shell_call(record["tools"], command))

    return script


def no_report_script(record: dict[str, Any]) -> Turn:
    return Turn(text=NO_REPORT_TEXT)


SCRIPTS: dict[str, Script] = {"report": report_script(), "no_report": no_report_script}


def by_worker(scripts: dict[str, str | Script], default: str | Script = "report") -> Script:
    """Pick the script by the envelope's worker_id (``default`` for the others)."""

    def script(record: dict[str, Any]) -> Turn:
        chosen = scripts.get((record["envelope"] or {}).get("worker_id", ""), default)
        return (SCRIPTS[chosen] if isinstance(chosen, str) else chosen)(record)

    return script


class ResponsesServer:
    """Scripted Responses API on 127.0.0.1:<free port>; ``base_url`` ends in ``/v1``."""

    def __init__(self, script: str | Script = "report", log_path: str | Path | None = None) -> None:
        self.fail_status = {"fail": 400, "error": 500}.get(script) if isinstance(script, str) else None
        self.hang = script == "hang"
        self.script: Script | None = None if self.fail_status or self.hang else (
            SCRIPTS[script] if isinstance(script, str) else script
        )
        self._stopping = threading.Event()
        self.log_path = Path(log_path) if log_path else None
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[dict[str, Any]] = []  # raw request bodies, same order as .requests
        self.other_requests: list[tuple[str, str]] = []  # (method, path) of anything but POST /responses
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ResponsesServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="responses-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases "hang" handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ResponsesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def for_worker(self, worker_id: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if (r["envelope"] or {}).get("worker_id") == worker_id]

    def _record(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        prompt, envelope = find_envelope(user_texts(body))
        outputs = tool_outputs(body)
        with self._lock:
            record = {
                "n": len(self.requests) + 1,
                "path": path,
                "model": body.get("model"),
                "effort": (body.get("reasoning") or {}).get("effort"),
                "prompt": prompt,
                "envelope": envelope,
                "tools": tool_names(body),
                "has_tool_output": bool(outputs),
                "tool_output": outputs[-1] if outputs else None,
            }
            self.requests.append(record)
            self.bodies.append(body)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(record) + "\n")
        return record

    def _events(self, record: dict[str, Any], turn: Turn) -> list[dict[str, Any]]:
        n = record["n"]
        rid = f"resp_{n}"
        response = {"id": rid, "object": "response", "status": "in_progress", "model": record["model"], "output": []}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": response},
            {"type": "response.in_progress", "response": response},
        ]
        if turn.call is not None:
            name, arguments = turn.call
            item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": name,
                    "arguments": "", "status": "in_progress"}
            events += [
                {"type": "response.output_item.added", "output_index": 0, "item": item},
                {"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": item["id"],
                 "delta": arguments},
                {"type": "response.function_call_arguments.done", "output_index": 0, "item_id": item["id"],
                 "arguments": arguments},
                {"type": "response.output_item.done", "output_index": 0,
                 "item": {**item, "arguments": arguments, "status": "completed"}},
            ]
            output = [{**item, "arguments": arguments, "status": "completed"}]
        else:
            text = turn.text or ""
            item = {"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "in_progress", "content": []}
            part = {"type": "output_text", "text": "", "annotations": []}
            done = {**item, "status": "completed", "content": [{**part, "text": text}]}
            events += [
                {"type": "response.output_item.added", "output_index": 0, "item": item},
                {"type": "response.content_part.added", "output_index": 0, "item_id": item["id"], "content_index": 0,
                 "part": part},
                {"type": "response.output_text.delta", "output_index": 0, "item_id": item["id"], "content_index": 0,
                 "delta": text},
                {"type": "response.output_text.done", "output_index": 0, "item_id": item["id"], "content_index": 0,
                 "text": text},
                {"type": "response.content_part.done", "output_index": 0, "item_id": item["id"], "content_index": 0,
                 "part": {**part, "text": text}},
                {"type": "response.output_item.done", "output_index": 0, "item": done},
            ]
            output = [done]
        usage = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 120}
        events.append({"type": "response.completed",
                       "response": {**response, "status": "completed", "output": output, "usage": usage}})
        for seq, event in enumerate(events):
            event["sequence_number"] = seq
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
                if self.path.split("?")[0].endswith("/models"):
                    self._json(200, {"object": "list", "data": [], "models": []})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

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
                if not path.endswith("/responses"):
                    with server._lock:
                        server.other_requests.append(("POST", self.path))
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
                    return
                record = server._record(path, body)
                if server.hang:
                    self._hang(server._events(record, Turn(text=""))[0])
                    return
                if server.script is None:
                    kind = "invalid_request_error" if server.fail_status == 400 else "server_error"
                    self._json(server.fail_status or 500, {"error": {"message": "scripted failure", "type": kind,
                                                                     "code": "scripted_failure"}})
                    return
                try:
                    turn = server.script(record)
                except Exception as exc:  # surface script bugs to codex and the test, not a dead socket
                    self._json(500, {"error": {"message": f"script error: {exc!r}", "type": "server_error"}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for event in server._events(record, turn):
                    self.wfile.write(sse(event))
                    self.wfile.flush()
                self.close_connection = True

        return Handler


if __name__ == "__main__":  # manual use: python responses_server.py [script]
    import sys
    import time

    with ResponsesServer(sys.argv[1] if len(sys.argv) > 1 else "report") as srv:
        print(srv.base_url, flush=True)
        while True:
            time.sleep(3600)
