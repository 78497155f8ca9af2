"""Google's Gemini CLI: `gemini -m MODEL`, prompt on stdin (headless when stdin is not a terminal),
`--output-format stream-json` for its JSONL events.

Its `result` event's `stats` carry the session's tokens per model: `input_tokens` (every prompt token,
cached ones included), `cached`, `output_tokens` (the answer without thoughts) and `total_tokens`
(thoughts included). The CLI has no flag for reasoning effort: a tier's `effort` reaches the worker as
$RLM_EFFORT only. It has no OS sandbox of its own here (`--sandbox` needs docker or podman), so the
sandbox choice maps to its approval mode; `--skip-trust` keeps that mode in a folder it has not seen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_tasks.agents.base import AgentSettings, Failure, SkillsHome, Usage, classify, count, flag_value, short

NAME = "gemini"
DEFAULT_BINARY: str | None = "gemini"
TIERS: Mapping[str, tuple[str, str | None]] = {
    "standard": ("gemini-2.5-flash", None),
    "standard-plus": ("gemini-2.5-pro", None),
    "heavy": ("gemini-3-pro-preview", None),
}
# prompts up to 200k tokens; Google charges more above that
PRICES: Mapping[str, tuple[float, float, float]] = {
    "gemini-2.5-flash-lite": (0.10, 0.01, 0.40),
    "gemini-2.5-flash": (0.30, 0.03, 2.50),
    "gemini-2.5-pro": (1.25, 0.125, 10.0),
    "gemini-3-pro-preview": (2.0, 0.20, 12.0),
}
# skills: $GEMINI_CLI_HOME/.gemini/skills (the CLI's stand-in for ~), else ~/.gemini/skills
SKILLS: SkillsHome | None = SkillsHome("GEMINI_CLI_HOME", ".gemini", "--gemini-dir", inside=".gemini")
USAGE_MARKERS: tuple[bytes, ...] = (b'"result"',)
FAILURE_MARKERS: tuple[bytes, ...] = (b'"result"', b'"error"')
VERSION_ARGV: tuple[str, ...] = ("--version",)
STARTER = """\
agent:                             # codex | claude | gemini | opencode | command; switching is this one block
  kind: gemini                     # `gemini`, prompt on stdin; needs GEMINI_API_KEY (or a login in ~/.gemini)
  sandbox: workspace-write         # read-only | workspace-write | danger-full-access | bypass
  timeout: 1800                    # seconds; the whole process group is ended after it
tiers:                             # compute_tier → model (the Gemini CLI takes no effort)
  standard:      {model: gemini-2.5-flash}
  standard-plus: {model: gemini-2.5-pro}
  heavy:         {model: gemini-3-pro-preview}
"""
# The approval mode closest to each sandbox choice: plan is read-only, auto_edit approves edits and nothing
# else (a shell command is refused in a headless run), yolo approves everything.
APPROVAL_MODES = {"read-only": "plan", "workspace-write": "auto_edit", "danger-full-access": "yolo"}


def config_problems(agent: Mapping[str, Any]) -> list[str]:
    return []


def argv(agent: AgentSettings, model: str, effort: str | None) -> list[str]:
    out = [agent.binary or "gemini", "-m", model]
    if agent.sandbox == "bypass":
        out.append("--yolo")
    else:
        out += ["--approval-mode", APPROVAL_MODES[agent.sandbox]]
    return [*out, "--skip-trust", *agent.args]


def report_mode(agent: AgentSettings) -> str:
    return "file"


def stream(args: Sequence[str], argv: list[str]) -> bool:
    chosen = flag_value(args, "--output-format")
    chosen = chosen if chosen is not None else flag_value(args, "-o")
    if chosen is not None:
        return chosen == "stream-json"
    argv.extend(["--output-format", "stream-json"])
    return True


def usage(events: list[dict[str, Any]]) -> Usage | None:
    results = [e for e in events if e.get("type") == "result" and isinstance(e.get("stats"), dict)]
    if not results:
        return None
    stats = results[-1]["stats"]
    models = stats.get("models") if isinstance(stats.get("models"), dict) else {}
    per_model = [m for m in models.values() if isinstance(m, dict)] or [stats]
    thoughts = sum(max(0, count(m.get("total_tokens")) - count(m.get("input_tokens")) - count(m.get("output_tokens")))
                   for m in per_model)
    return Usage(
        input_tokens=sum(count(m.get("input_tokens")) for m in per_model),
        cached_input_tokens=sum(count(m.get("cached")) for m in per_model),
        output_tokens=sum(count(m.get("output_tokens")) for m in per_model) + thoughts,  # thoughts bill as output
        reasoning_tokens=thoughts,
        model=next(iter(models)) if len(models) == 1 else None,
    )


def log_line(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    if kind == "init":
        return f"[session] model {event.get('model')}"
    if kind == "message" and event.get("role") == "assistant":
        return f"[agent] {short(event.get('content', ''))}"
    if kind == "tool_use":
        return f"[tool] {event.get('tool_name')} {short(json.dumps(event.get('parameters'), ensure_ascii=False))}"
    if kind == "tool_result" and event.get("status") == "error":
        error = event["error"] if isinstance(event.get("error"), dict) else {}
        return f"[tool error] {short(error.get('message', ''))}"
    if kind == "error":
        return f"[{event.get('severity') or 'error'}] {short(event.get('message', ''))}"
    if kind == "result":
        stats = event["stats"] if isinstance(event.get("stats"), dict) else {}
        error = event["error"] if isinstance(event.get("error"), dict) else {}
        return (f"[result] {event.get('status')}, {stats.get('tool_calls')} tool calls, input "
                f"{stats.get('input_tokens')} (cached {stats.get('cached')}), output {stats.get('output_tokens')}"
                + (f": {short(error.get('message', ''))}" if error else ""))
    return None


def failure(events: list[dict[str, Any]]) -> Failure | None:
    for event in reversed(events):
        error = event.get("error") if event.get("type") == "result" else event if event.get("type") == "error" \
            else None
        if isinstance(error, dict) and error.get("severity") != "warning":
            found = classify(str(error.get("message", "")), str(error.get("type", "")))
            if found:
                return found
    return None


def sample_events(usage: Usage, text: str) -> list[dict[str, Any]]:
    model = usage.model or "fake"
    stats = {"total_tokens": usage.input_tokens + usage.output_tokens, "input_tokens": usage.input_tokens,
             "output_tokens": usage.output_tokens - usage.reasoning_tokens, "cached": usage.cached_input_tokens,
             "input": usage.input_tokens - usage.cached_input_tokens}
    return [
        {"type": "init", "session_id": "fake", "model": model},
        {"type": "message", "role": "assistant", "content": text, "delta": True},
        {"type": "result", "status": "success", "stats": {**stats, "duration_ms": 1, "tool_calls": 0,
                                                          "models": {model: stats}}},
    ]
