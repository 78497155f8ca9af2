"""The plumbing shared by the scripted model servers (responses_server, messages_server, gemini_server).

``ScriptedServer`` serves HTTP on 127.0.0.1:<free port> in a daemon thread, records each scripted
request (``.requests``, ``.bodies``, JSONL at ``log_path``) and answers it with the script's turn as
a server-sent-event stream. Subclasses supply the protocol: which path is scripted, what a request
record holds, what error bodies and events look like. Standard library only.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, TypeVar

# A script maps a request record to the module's own Turn class.
Script = Callable[[dict[str, Any]], Any]
Server = TypeVar("Server", bound="ScriptedServer")

FAILURES = {"fail": 400, "error": 500}


def usage_for(n: int) -> dict[str, int]:
    """The token counts the n-th scripted answer reports (0: side requests): known, and different per
    request, so a test can check that what the CLI and the runner recorded is exactly the sum sent."""
    return {"input": 1000 + 37 * n, "cached": 100 + 11 * n, "cache_write": 3 * n, "output": 50 + 7 * n,
            "reasoning": 5 + n}


def sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def by_worker(table: dict[str, Script], scripts: dict[str, str | Script], default: str | Script) -> Script:
    """Pick the script (a callable or a name in ``table``) by the envelope's worker_id."""

    def script(record: dict[str, Any]) -> Any:
        chosen = scripts.get((record["envelope"] or {}).get("worker_id", ""), default)
        return (table[chosen] if isinstance(chosen, str) else chosen)(record)

    return script


class ScriptedServer:
    """Records and scripts ``POST <endpoint>``; ``canned`` requests and unknown routes land in ``.other_requests``."""

    scripts: ClassVar[dict[str, Script]]  # the named scripts
    api_root = ""  # appended to base_url
    endpoint = ""  # path suffix of the scripted POST
    # (method, path suffix) -> the JSON of a 200 answer (None: an empty one) for unscripted routes a CLI needs
    canned: ClassVar[dict[tuple[str, str], dict[str, Any] | None]] = {}
    side_turn: Any = None  # the answer to requests that describe() does not record

    def __init__(self, script: str | Script = "report", log_path: str | Path | None = None) -> None:
        self.fail_status = FAILURES.get(script) if isinstance(script, str) else None
        self.hang = script == "hang"
        self.script: Script | None = None if self.fail_status or self.hang else (
            self.scripts[script] if isinstance(script, str) else script
        )
        self._stopping = threading.Event()
        self.log_path = Path(log_path) if log_path else None
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[dict[str, Any]] = []  # raw request bodies, same order as .requests
        self.other_requests: list[tuple[str, str]] = []  # (method, path) of anything but the scripted POST
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- protocol hooks ------------------------------------------------------------------------

    def describe(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The record of a scripted request (``"n"`` is added), or None to answer it with ``side_turn``."""
        raise NotImplementedError

    def error_body(self, status: int, message: str, code: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def usage_sent(self, n: int) -> dict[str, Any]:
        """The usage the n-th answer carries, in the API's own field names (recorded as ``usage``)."""
        raise NotImplementedError

    def events(self, n: int, body: dict[str, Any], turn: Any) -> list[dict[str, Any]]:
        """The stream answering request ``n`` with ``turn``; with turn None, at least its opening event."""
        raise NotImplementedError

    def unstreamed(self, n: int, body: dict[str, Any], turn: Any) -> dict[str, Any] | None:
        """A JSON answer instead of the stream, when the protocol allows a non-streaming request."""
        return None

    def frame(self, event: dict[str, Any]) -> bytes:
        """One event on the wire (a Gemini stream has `data:` lines only)."""
        return sse(event)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.api_root}"

    def start(self: Server) -> Server:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases "hang" handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self: Server) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def for_worker(self, worker_id: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if (r["envelope"] or {}).get("worker_id") == worker_id]

    def _record(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        fields = self.describe(path, body)
        if fields is None:
            return None
        with self._lock:
            n = len(self.requests) + 1
            record = {"n": n, **fields, "usage": self.usage_sent(n)}
            self.requests.append(record)
            self.bodies.append(body)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(record) + "\n")
        return record

    def _other(self, method: str, path: str) -> None:
        with self._lock:
            self.other_requests.append((method, path))

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

            def _empty(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _error(self, status: int, message: str, code: str | None = None) -> None:
                self._json(status, server.error_body(status, message, code))

            def _stream_head(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()

            def _unscripted(self, method: str) -> None:
                """Answer a canned route, else 404; either way the request is only noted in .other_requests."""
                server._other(method, self.path)
                path = self.path.split("?")[0]
                for (canned_method, suffix), payload in server.canned.items():
                    if method == canned_method and path.endswith(suffix):
                        if payload is None:
                            self._empty(200)
                        else:
                            self._json(200, payload)
                        return
                if method == "HEAD":  # a HEAD answer carries no body
                    self._empty(404)
                else:
                    self._error(404, f"no route {self.path}")

            def do_GET(self) -> None:
                self._unscripted("GET")

            def do_HEAD(self) -> None:
                self._unscripted("HEAD")

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
                if not path.endswith(server.endpoint):
                    self._unscripted("POST")
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._error(400, "body is not JSON")
                    return
                record = server._record(path, body)
                n = record["n"] if record else 0
                if record is None:
                    turn = server.side_turn
                elif server.hang:
                    self._stream_head()
                    self.wfile.write(server.frame(server.events(n, body, None)[0]))
                    self.wfile.flush()
                    server._stopping.wait()
                    self.close_connection = True
                    return
                elif server.script is None:
                    self._error(server.fail_status or 500, "scripted failure", "scripted_failure")
                    return
                else:
                    try:
                        turn = server.script(record)
                    except Exception as exc:  # surface script bugs to the CLI and the test, not a dead socket
                        self._error(500, f"script error: {exc!r}")
                        return
                answer = server.unstreamed(n, body, turn)
                if answer is not None:
                    self._json(200, answer)
                    return
                self._stream_head()
                for event in server.events(n, body, turn):
                    self.wfile.write(server.frame(event))
                    self.wfile.flush()
                self.close_connection = True

        return Handler
