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

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

try:
    from . import scripted_server
    from .scripted_server import ScriptedServer
except ImportError:  # imported as a top-level module (tests/e2e on sys.path)
    import scripted_server
    from scripted_server import ScriptedServer

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
    return scripted_server.by_worker(SCRIPTS, scripts, default)


class ResponsesServer(ScriptedServer):
    """Scripted Responses API on 127.0.0.1:<free port>; ``base_url`` ends in ``/v1``."""

    scripts = SCRIPTS
    api_root = "/v1"
    endpoint = "/responses"
    canned: ClassVar[dict[tuple[str, str], dict[str, Any] | None]] = {
        ("GET", "/models"): {"object": "list", "data": [], "models": []},
    }
    error_types: ClassVar[dict[int, str]] = {400: "invalid_request_error", 404: "not_found", 500: "server_error"}

    def describe(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        prompt, envelope = find_envelope(user_texts(body))
        outputs = tool_outputs(body)
        return {
            "path": path,
            "model": body.get("model"),
            "effort": (body.get("reasoning") or {}).get("effort"),
            "prompt": prompt,
            "envelope": envelope,
            "tools": tool_names(body),
            "has_tool_output": bool(outputs),
            "tool_output": outputs[-1] if outputs else None,
        }

    def error_body(self, status: int, message: str, code: str | None = None) -> dict[str, Any]:
        error = {"message": message, "type": self.error_types[status]}
        return {"error": error | ({"code": code} if code else {})}

    def usage_sent(self, n: int) -> dict[str, Any]:
        u = scripted_server.usage_for(n)  # input_tokens counts the cached ones, as the API does
        return {"input_tokens": u["input"], "input_tokens_details": {"cached_tokens": u["cached"]},
                "output_tokens": u["output"], "output_tokens_details": {"reasoning_tokens": u["reasoning"]},
                "total_tokens": u["input"] + u["output"]}

    def events(self, n: int, body: dict[str, Any], turn: Turn | None) -> list[dict[str, Any]]:
        turn = turn or Turn(text="")
        response = {"id": f"resp_{n}", "object": "response", "status": "in_progress", "model": body.get("model"),
                    "output": []}
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
        usage = self.usage_sent(n)
        events.append({"type": "response.completed",
                       "response": {**response, "status": "completed", "output": output, "usage": usage}})
        for seq, event in enumerate(events):
            event["sequence_number"] = seq
        return events


if __name__ == "__main__":  # manual use: python responses_server.py [script]
    import sys
    import time

    with ResponsesServer(sys.argv[1] if len(sys.argv) > 1 else "report") as srv:
        print(srv.base_url, flush=True)
        while True:
            time.sleep(3600)
