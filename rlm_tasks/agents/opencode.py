"""opencode: `opencode run -m PROVIDER/MODEL`, prompt on stdin, `--format json` for its JSONL events.

Each step of the session ends with a `step_finish` event whose part carries its `tokens` (`input` without
the cache, `cache.read`, `cache.write`, `output` without reasoning, `reasoning`) and `cost` (0 when opencode
knows no price for the model). A tier's `effort` is opencode's `--variant` (the provider's reasoning effort).
opencode has no OS sandbox: read-only runs its `plan` agent (no edits), workspace-write its default `build`
agent (what its permissions ask for, e.g. a path outside the project, is refused in a run), and
danger-full-access and bypass add `--auto` (every permission not explicitly denied is granted).
`--title` spares the model call that would name the session; `--dir` names the repository root, since opencode
takes its project directory from $PWD, not from the working directory it was started in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_tasks.agents.base import (
    ROOT_PLACEHOLDER,
    AgentSettings,
    Failure,
    SkillsHome,
    Usage,
    classify,
    cost,
    count,
    flag_value,
    short,
)

NAME = "opencode"
DEFAULT_BINARY: str | None = "opencode"
TIERS: Mapping[str, tuple[str, str | None]] = {
    "standard": ("anthropic/claude-haiku-4-5", None),
    "standard-plus": ("anthropic/claude-sonnet-4-5", None),
    "heavy": ("anthropic/claude-opus-4-5", "high"),
}
# opencode names a model PROVIDER/MODEL; it reports its own cost for the models it knows, which wins
PRICES: Mapping[str, tuple[float, float, float]] = {
    "anthropic/claude-haiku-4-5": (1.0, 0.1, 5.0),
    "anthropic/claude-sonnet-4-5": (3.0, 0.3, 15.0),
    "anthropic/claude-opus-4-5": (5.0, 0.5, 25.0),
    "openai/gpt-5.1-codex-mini": (0.25, 0.025, 2.0),
    "openai/gpt-5.1-codex": (1.25, 0.125, 10.0),
    "google/gemini-2.5-pro": (1.25, 0.125, 10.0),
}
# skills: $OPENCODE_CONFIG_DIR/skills (a directory opencode reads as it reads .opencode/), else
# ~/.config/opencode/skills
SKILLS: SkillsHome | None = SkillsHome("OPENCODE_CONFIG_DIR", ".config/opencode", "--opencode-dir")
USAGE_MARKERS: tuple[bytes, ...] = (b'"step_finish"',)
FAILURE_MARKERS: tuple[bytes, ...] = (b'"error"',)
VERSION_ARGV: tuple[str, ...] = ("--version",)
STARTER = """\
agent:                             # codex | claude | gemini | opencode | command; switching is this one block
  kind: opencode                   # `opencode run`, prompt on stdin; log in with `opencode auth login` first
  sandbox: workspace-write         # read-only | workspace-write | danger-full-access | bypass
  timeout: 1800                    # seconds; the whole process group is ended after it
tiers:                             # compute_tier → PROVIDER/MODEL and effort (opencode's --variant)
  standard:      {model: anthropic/claude-haiku-4-5}
  standard-plus: {model: anthropic/claude-sonnet-4-5}
  heavy:         {model: anthropic/claude-opus-4-5, effort: high}
"""


def config_problems(agent: Mapping[str, Any]) -> list[str]:
    return []


def argv(agent: AgentSettings, model: str, effort: str | None) -> list[str]:
    out = [agent.binary or "opencode", "run", "--dir", ROOT_PLACEHOLDER, "-m", model]
    if effort:
        out += ["--variant", effort]
    if agent.sandbox == "read-only":
        out += ["--agent", "plan"]
    elif agent.sandbox in ("danger-full-access", "bypass"):
        out.append("--auto")
    return [*out, "--title", "rlm worker", *agent.args]


def report_mode(agent: AgentSettings) -> str:
    return "file"


def stream(args: Sequence[str], argv: list[str]) -> bool:
    chosen = flag_value(args, "--format")
    if chosen is not None:
        return chosen == "json"
    argv.extend(["--format", "json"])
    return True


def _part(event: dict[str, Any]) -> dict[str, Any]:
    return event["part"] if isinstance(event.get("part"), dict) else {}


def usage(events: list[dict[str, Any]]) -> Usage | None:
    steps = [_part(e) for e in events if e.get("type") == "step_finish"]
    tokens = [p["tokens"] for p in steps if isinstance(p.get("tokens"), dict)]
    if not tokens:
        return None
    caches = [t["cache"] if isinstance(t.get("cache"), dict) else {} for t in tokens]
    read = sum(count(c.get("read")) for c in caches)
    reasoning = sum(count(t.get("reasoning")) for t in tokens)
    spent = sum(cost(p.get("cost")) or 0.0 for p in steps)
    return Usage(
        input_tokens=sum(count(t.get("input")) for t in tokens) + read + sum(count(c.get("write")) for c in caches),
        cached_input_tokens=read,
        output_tokens=sum(count(t.get("output")) for t in tokens) + reasoning,
        reasoning_tokens=reasoning,
        cost_usd=spent or None,  # 0: opencode knows no price for the model
    )


def log_line(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    part = _part(event)
    if kind == "text":
        return f"[agent] {short(part.get('text', ''))}"
    if kind == "reasoning":
        return f"[reasoning] {short(part.get('text', ''))}"
    if kind == "tool_use":
        state = part["state"] if isinstance(part.get("state"), dict) else {}
        shown = f"[tool] {part.get('tool')} {short(json.dumps(state.get('input'), ensure_ascii=False))}"
        if state.get("status") == "error":
            return f"{shown}\n[tool error] {short(state.get('error', ''))}"
        return shown + (f" ({state.get('status')})" if state.get("status") != "completed" else "")
    if kind == "step_finish" and isinstance(part.get("tokens"), dict):
        tokens = part["tokens"]
        cache = tokens["cache"] if isinstance(tokens.get("cache"), dict) else {}
        return (f"[step] {part.get('reason')}: input {tokens.get('input')} (cache read {cache.get('read')}), "
                f"output {tokens.get('output')}, cost {part.get('cost')}")
    if kind == "error":
        return f"[error] {short(_message(event))}"
    return None


def _message(event: dict[str, Any]) -> str:
    error = event.get("error")
    if not isinstance(error, dict):
        return str(error or "")
    data = error["data"] if isinstance(error.get("data"), dict) else {}
    return " ".join(str(x) for x in (error.get("name", ""), data.get("statusCode", ""), data.get("message", "")) if x)


def failure(events: list[dict[str, Any]]) -> Failure | None:
    for event in reversed(events):
        if event.get("type") == "error":
            found = classify(_message(event))
            if found:
                return found
    return None


def sample_events(usage: Usage, text: str) -> list[dict[str, Any]]:
    uncached = usage.input_tokens - usage.cached_input_tokens
    tokens = {"total": usage.input_tokens + usage.output_tokens, "input": uncached,
              "output": usage.output_tokens - usage.reasoning_tokens, "reasoning": usage.reasoning_tokens,
              "cache": {"write": 0, "read": usage.cached_input_tokens}}
    return [
        {"type": "step_start", "part": {"type": "step-start"}},
        {"type": "text", "part": {"type": "text", "text": text}},
        {"type": "step_finish", "part": {"type": "step-finish", "reason": "stop", "tokens": tokens,
                                         "cost": usage.cost_usd or 0}},
    ]
