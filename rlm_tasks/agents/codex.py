"""OpenAI Codex CLI: `codex exec`, prompt on stdin (`-`), `--json` for its JSONL events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlm_tasks.agents.base import ROOT_PLACEHOLDER, AgentSettings, Failure, SkillsHome, Usage, classify, count, short

NAME = "codex"
DEFAULT_BINARY: str | None = "codex"
TIERS: Mapping[str, tuple[str, str | None]] = {
    "standard": ("gpt-5.1-codex-mini", "medium"),
    "standard-plus": ("gpt-5.2-codex", "medium"),
    "heavy": ("gpt-5.2-codex", "xhigh"),
}
PRICES: Mapping[str, tuple[float, float, float]] = {
    "gpt-5.1-codex-mini": (0.25, 0.025, 2.0),
    "gpt-5.1-codex": (1.25, 0.125, 10.0),
    "gpt-5-codex": (1.25, 0.125, 10.0),
    "gpt-5.2-codex": (1.75, 0.175, 14.0),
}
SKILLS: SkillsHome | None = SkillsHome("CODEX_HOME", ".codex", "--codex-home")
USAGE_MARKERS: tuple[bytes, ...] = (b"turn.completed",)
FAILURE_MARKERS: tuple[bytes, ...] = (b"turn.failed", b'"error"')
VERSION_ARGV: tuple[str, ...] = ("--version",)
STARTER = """\
agent:                             # codex | claude | gemini | opencode | command; switching is this one block
  kind: codex                      # `codex exec`, prompt on stdin; log in with `codex login` first
  sandbox: workspace-write         # read-only | workspace-write | danger-full-access | bypass
  timeout: 1800                    # seconds; the whole process group is ended after it
tiers:                             # compute_tier → model and reasoning effort
  standard:      {model: gpt-5.1-codex-mini, effort: medium}
  standard-plus: {model: gpt-5.2-codex, effort: medium}
  heavy:         {model: gpt-5.2-codex, effort: xhigh}
"""


def config_problems(agent: Mapping[str, Any]) -> list[str]:
    return []


def argv(agent: AgentSettings, model: str, effort: str | None) -> list[str]:
    out = [agent.binary or "codex", "exec", "-m", model]
    if effort:
        out += ["-c", f'model_reasoning_effort="{effort}"']
    out += ["-C", ROOT_PLACEHOLDER]
    if agent.sandbox == "bypass":
        out.append("--dangerously-bypass-approvals-and-sandbox")
    else:
        out += ["--sandbox", agent.sandbox]  # codex's own names: read-only, workspace-write, danger-full-access
    return [*out, *agent.args, "-"]


def report_mode(agent: AgentSettings) -> str:
    return "file"


def stream(args: Sequence[str], argv: list[str]) -> bool:
    if "--json" not in args:
        argv.insert(len(argv) - 1, "--json")  # before the final "-" (prompt on stdin)
    return True


def usage(events: list[dict[str, Any]]) -> Usage | None:
    found = [e["usage"] for e in events if e.get("type") == "turn.completed" and isinstance(e.get("usage"), dict)]
    if not found:
        return None
    return Usage(
        input_tokens=sum(count(u.get("input_tokens")) for u in found),
        cached_input_tokens=sum(count(u.get("cached_input_tokens")) for u in found),
        output_tokens=sum(count(u.get("output_tokens")) for u in found),
        reasoning_tokens=sum(count(u.get("reasoning_output_tokens")) for u in found),
    )


def log_line(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    item: dict[str, Any] = event["item"] if isinstance(event.get("item"), dict) else {}
    if kind == "item.completed":
        what = item.get("type")
        if what == "agent_message":
            return f"[agent] {short(item.get('text', ''))}"
        if what == "reasoning":
            return f"[reasoning] {short(item.get('text', ''))}"
        if what == "command_execution":
            return f"[exec] {short(item.get('command', ''))} (exit {item.get('exit_code')})"
        if what == "file_change":
            changes: list[Any] = item["changes"] if isinstance(item.get("changes"), list) else []
            return "[files] " + short(", ".join(str(c.get("path")) for c in changes if isinstance(c, dict)))
        if what == "error":
            return f"[error] {short(item.get('message', ''))}"
        return None
    if kind == "turn.completed" and isinstance(event.get("usage"), dict):
        used = event["usage"]
        return (f"[usage] input {used.get('input_tokens')} (cached {used.get('cached_input_tokens')}), "
                f"output {used.get('output_tokens')}")
    if kind in ("turn.failed", "error"):
        error: dict[str, Any] = event["error"] if isinstance(event.get("error"), dict) else event
        return f"[error] {short(error.get('message', ''))}"
    return None


def failure(events: list[dict[str, Any]]) -> Failure | None:
    for event in reversed(events):
        if event.get("type") in ("turn.failed", "error"):
            error = event["error"] if isinstance(event.get("error"), dict) else event
            found = classify(str(error.get("message", "")))
            if found:
                return found
    return None


def sample_events(usage: Usage, text: str) -> list[dict[str, Any]]:
    return [
        {"type": "thread.started", "thread_id": "fake"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": text}},
        {"type": "turn.completed", "usage": {"input_tokens": usage.input_tokens,
                                             "cached_input_tokens": usage.cached_input_tokens,
                                             "output_tokens": usage.output_tokens,
                                             "reasoning_output_tokens": usage.reasoning_tokens}},
    ]
