"""Claude Code: `claude -p`, prompt on stdin, `--output-format stream-json --verbose` for its JSONL events.

The final `result` event carries `modelUsage` (per model), `usage` and `total_cost_usd`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_tasks.agents.base import AgentSettings, Failure, SkillsHome, Usage, classify, cost, count, flag_value, short

NAME = "claude"
DEFAULT_BINARY: str | None = "claude"
TIERS: Mapping[str, tuple[str, str | None]] = {
    "standard": ("claude-haiku-4-5", "medium"),
    "standard-plus": ("claude-sonnet-4-5", "medium"),
    "heavy": ("claude-opus-4-1", "high"),
}
PRICES: Mapping[str, tuple[float, float, float]] = {
    "claude-haiku-4-5": (1.0, 0.1, 5.0),
    "claude-sonnet-4-5": (3.0, 0.3, 15.0),
    "claude-sonnet-4-6": (3.0, 0.3, 15.0),
    "claude-opus-4-5": (5.0, 0.5, 25.0),
    "claude-opus-4-6": (5.0, 0.5, 25.0),
}
SKILLS: SkillsHome | None = SkillsHome("CLAUDE_CONFIG_DIR", ".claude", "--claude-dir")
USAGE_MARKERS: tuple[bytes, ...] = (b'"result"', b'"assistant"')
FAILURE_MARKERS: tuple[bytes, ...] = (b'"result"', b'"error"')
VERSION_ARGV: tuple[str, ...] = ("--version",)
STARTER = """\
agent:                             # codex | claude | gemini | opencode | command; switching is this one block
  kind: claude                     # `claude -p`, prompt on stdin; needs ANTHROPIC_API_KEY or a login
  sandbox: workspace-write         # read-only | workspace-write | danger-full-access | bypass
  timeout: 1800                    # seconds; the whole process group is ended after it
tiers:                             # compute_tier → model and effort
  standard:      {model: claude-haiku-4-5, effort: medium}
  standard-plus: {model: claude-sonnet-4-5, effort: medium}
  heavy:         {model: claude-opus-4-1, effort: high}
"""
# Claude Code's permission modes closest to each sandbox choice.
PERMISSION_MODES = {
    "read-only": "plan",
    "workspace-write": "acceptEdits",
    "danger-full-access": "bypassPermissions",
}


def config_problems(agent: Mapping[str, Any]) -> list[str]:
    return []


def argv(agent: AgentSettings, model: str, effort: str | None) -> list[str]:
    out = [agent.binary or "claude", "-p", "--model", model]
    if effort:
        out += ["--effort", effort]
    if agent.sandbox == "bypass":
        out.append("--dangerously-skip-permissions")
    else:
        out += ["--permission-mode", PERMISSION_MODES[agent.sandbox]]
    return [*out, *agent.args]


def report_mode(agent: AgentSettings) -> str:
    return "file"


def stream(args: Sequence[str], argv: list[str]) -> bool:
    chosen = flag_value(args, "--output-format")
    if chosen is not None:
        return chosen in ("stream-json", "json")  # json: one `result` event at the end
    argv.extend(["--output-format", "stream-json", *([] if "--verbose" in args else ["--verbose"])])
    return True


def usage(events: list[dict[str, Any]]) -> Usage | None:
    results = [e for e in events if e.get("type") == "result"]
    if results:
        result = results[-1]
        spent = cost(result.get("total_cost_usd"))
        per_model = result.get("modelUsage")
        if isinstance(per_model, dict) and per_model:  # every model it called, side requests included
            models = [m for m in per_model.values() if isinstance(m, dict)]
            return Usage(
                input_tokens=sum(count(m.get("inputTokens")) + count(m.get("cacheReadInputTokens"))
                                 + count(m.get("cacheCreationInputTokens")) for m in models),
                cached_input_tokens=sum(count(m.get("cacheReadInputTokens")) for m in models),
                output_tokens=sum(count(m.get("outputTokens")) for m in models),
                reasoning_tokens=sum(count(m.get("thinkingTokens")) for m in models),
                cost_usd=spent,
                model=next(iter(per_model)) if len(per_model) == 1 else None,
            )
        if isinstance(result.get("usage"), dict):
            return _from_usages([result["usage"]], spent)
    # no result (ended early): what the messages it got said, each message once
    by_message: dict[str, dict[str, Any]] = {}
    for event in events:
        message = event.get("message")
        if event.get("type") == "assistant" and isinstance(message, dict) and isinstance(message.get("usage"), dict):
            by_message[str(message.get("id"))] = message["usage"]
    return _from_usages(list(by_message.values()), None) if by_message else None


def _from_usages(usages: list[dict[str, Any]], spent: float | None) -> Usage:
    cached = sum(count(u.get("cache_read_input_tokens")) for u in usages)
    return Usage(
        input_tokens=sum(count(u.get("input_tokens")) + count(u.get("cache_creation_input_tokens")) for u in usages)
        + cached,
        cached_input_tokens=cached,
        output_tokens=sum(count(u.get("output_tokens")) for u in usages),
        cost_usd=spent,
    )


def log_line(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    if kind == "system" and event.get("subtype") == "init":
        return f"[session] model {event.get('model')}"
    if kind == "assistant" and isinstance(event.get("message"), dict):
        lines = []
        for block in event["message"].get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                lines.append(f"[agent] {short(block.get('text', ''))}")
            elif block.get("type") == "tool_use":
                lines.append(f"[tool] {block.get('name')} {short(json.dumps(block.get('input'), ensure_ascii=False))}")
        return "\n".join(lines) or None
    if kind == "result":
        spent = event.get("total_cost_usd")
        return (f"[result] {event.get('subtype')}, {event.get('num_turns')} turns"
                + (f", cost ${spent}" if spent is not None else "") + f": {short(event.get('result', ''))}")
    return None


def failure(events: list[dict[str, Any]]) -> Failure | None:
    for event in reversed(events):
        error = event.get("error")  # an assistant message's error kind: authentication_failed, rate_limit, ...
        if event.get("type") == "result" and event.get("is_error"):
            text = " ".join(str(x) for x in (event.get("result", ""), *(event.get("errors") or [])))
            found = _result_cause(event, text) or classify(text)
        elif isinstance(error, str):
            found = classify(_text(event), error.replace("_", " "))
        else:
            continue
        if found:
            return found
    return None


def _result_cause(result: dict[str, Any], text: str) -> Failure | None:
    """The `result` event's own fields, where it has them: terminal_reason, api_error, api_error_status."""
    status = result.get("api_error_status")
    if result.get("terminal_reason") == "prompt_too_long":
        cause = "context"
    elif result.get("api_error") == "connection_failed":
        cause = "network"
    elif status in (401, 403):
        cause = "auth"
    elif status == 429:
        cause = "rate_limit"
    elif isinstance(status, int) and not isinstance(status, bool) and status >= 500:
        cause = "server"
    else:
        return None
    return Failure(cause, short(text))


def _text(event: dict[str, Any]) -> str:
    message = event.get("message")
    blocks = message.get("content") if isinstance(message, dict) else None
    return " ".join(str(b.get("text", "")) for b in blocks or [] if isinstance(b, dict))


def sample_events(usage: Usage, text: str) -> list[dict[str, Any]]:
    uncached = usage.input_tokens - usage.cached_input_tokens
    return [
        {"type": "system", "subtype": "init", "model": usage.model or "fake"},
        {"type": "assistant", "message": {"id": "msg_1", "content": [{"type": "text", "text": text}],
                                          "usage": {"input_tokens": uncached, "output_tokens": usage.output_tokens,
                                                    "cache_read_input_tokens": usage.cached_input_tokens}}},
        {"type": "result", "subtype": "success", "is_error": False, "num_turns": 1, "result": text,
         "total_cost_usd": usage.cost_usd,
         "modelUsage": {usage.model or "fake": {"inputTokens": uncached, "outputTokens": usage.output_tokens,
                                                "cacheReadInputTokens": usage.cached_input_tokens,
                                                "cacheCreationInputTokens": 0,
                                                "thinkingTokens": usage.reasoning_tokens}}},
    ]
