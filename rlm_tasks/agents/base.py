"""What every agent kind provides (`AgentKind`), and the records its hooks return.

A kind is one module of this package satisfying `AgentKind`, registered in one line of
`agents/__init__.py`; nothing outside the package compares a kind's name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

ROOT_PLACEHOLDER = "{root}"  # the repository root in an argv template: digests match across machines
SHOWN_CHARS = 300  # of a message or command in the human log; the events file keeps everything
# What one attempt may report (usage_file.schema.json says the same): a bigger figure is a broken or hostile
# worker, and summed over a run it would overflow a float into a cost JSON cannot hold.
MAX_TOKENS = 10**12
MAX_COST_USD = 1e6
# Why an attempt failed, as a kind reads it from its events: `fatal` ones fail every attempt the same way.
CAUSES = {"auth": True, "quota": True, "model": True, "rate_limit": False, "context": False, "server": False,
          "network": False}


class Usage(NamedTuple):
    """Tokens of one attempt. input counts every prompt token, cached ones included; output counts reasoning."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None  # the agent's own figure, when it gives one
    model: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Failure(NamedTuple):
    """Why the agent says it failed: a cause of CAUSES and its own message."""

    cause: str
    message: str

    @property
    def fatal(self) -> bool:
        """Retrying cannot help (a bad key, no quota, an unknown model)."""
        return CAUSES[self.cause]


class SkillsHome(NamedTuple):
    """Where a kind looks for skills: `<home>/skills/<name>/SKILL.md`."""

    variable: str  # the environment variable naming the home (or, with `inside`, the directory above it)
    default: str  # the home under ~ when the variable is unset
    option: str  # `rlm skills install` option naming the home
    inside: str = ""  # the home relative to the variable's directory (gemini: $GEMINI_CLI_HOME/.gemini)


class AgentSettings(Protocol):
    """The agent block as a kind reads it (config.plan.AgentSpec satisfies it)."""

    @property
    def binary(self) -> str | None: ...
    @property
    def args(self) -> tuple[str, ...]: ...
    @property
    def sandbox(self) -> str: ...
    @property
    def command(self) -> tuple[str, ...]: ...
    @property
    def report(self) -> str: ...


class AgentKind(Protocol):
    """One agent kind. A module of this package is one; `agents.KINDS` checks every member at import."""

    NAME: str
    DEFAULT_BINARY: str | None  # None: the argv is `agent.command`, each item a Jinja template over the task
    TIERS: Mapping[str, tuple[str, str | None]]  # compute_tier → (model, effort): the starter's tiers
    PRICES: Mapping[str, tuple[float, float, float]]  # model → USD per million tokens: input, cached, output
    SKILLS: SkillsHome | None  # None: the kind reads no skills
    USAGE_MARKERS: tuple[bytes, ...]  # an events line without any of these cannot carry usage
    FAILURE_MARKERS: tuple[bytes, ...]  # nor, without any of these, an error
    VERSION_ARGV: tuple[str, ...]  # after the binary: prints the version and exits 0
    STARTER: str  # the `agent:` and `tiers:` block of `rlm init --agent NAME`

    def config_problems(self, agent: Mapping[str, Any]) -> list[str]:
        """What is missing from a (merged) agent block of this kind, one message each."""
        ...

    def argv(self, agent: AgentSettings, model: str, effort: str | None) -> list[str]:
        """The argv template (ROOT_PLACEHOLDER for the repository root): what provenance digests."""
        ...

    def report_mode(self, agent: AgentSettings) -> str:
        """`file` (the worker writes the report) or `stdout` (its stdout is the report)."""
        ...

    def stream(self, args: Sequence[str], argv: list[str]) -> bool:
        """Add the flags that make stdout its JSONL event stream to `argv`; False when `args` chose another output.

        Not part of the argv template: the output format does not change what the worker does, so digests
        stay as they were.
        """
        ...

    def usage(self, events: list[dict[str, Any]]) -> Usage | None:
        """The attempt's usage from its events (those with a USAGE_MARKERS line); None when it reported none."""
        ...

    def log_line(self, event: dict[str, Any]) -> str | None:
        """One readable log line for an event (None: nothing worth a line)."""
        ...

    def failure(self, events: list[dict[str, Any]]) -> Failure | None:
        """Why the attempt failed, from its error events (those with a FAILURE_MARKERS line); None: they say nothing."""
        ...

    def sample_events(self, usage: Usage, text: str) -> list[dict[str, Any]]:
        """The events this kind prints for a turn that answered `text` and used `usage` (the tests' fake agent)."""
        ...


# ---- helpers the kinds share ------------------------------------------------------------------------------

def count(value: Any) -> int:
    """A token count from an agent's event: a sane non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS else 0


def cost(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and 0 <= value <= MAX_COST_USD else None


def short(text: Any) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 3] + "..."


def flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value the last `flag VALUE` or `flag=VALUE` in `args` gives; None when `args` has no such flag."""
    chosen = [i for i, arg in enumerate(args) if arg == flag or arg.startswith(flag + "=")]
    if not chosen:
        return None
    i = chosen[-1]
    return args[i].partition("=")[2] or (args[i + 1] if i + 1 < len(args) else "")


def read_events(path: Path, markers: tuple[bytes, ...]) -> list[dict[str, Any]]:
    """The JSON objects of the lines holding one of `markers`; a line cut short or not JSON is skipped."""
    out: list[dict[str, Any]] = []
    try:
        with path.open("rb") as lines:
            for line in lines:  # one line at a time: the file can be large
                if not any(marker in line for marker in markers):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    out.append(event)
    except OSError:
        return []
    return out


# Words of an agent's error message → its cause, first match wins (the CLIs pass their API's message on).
_CAUSE_WORDS = (
    ("quota", ("insufficient_quota", "quota", "billing", "credit balance", "payment")),
    ("auth", ("401", "403", "unauthorized", "authentication", "api key", "api_key", "permission denied",
              "forbidden", "not logged in", "login")),
    ("model", ("model_not_found", "unknown model", "model not found", "does not exist", "not_found_error",
               "invalid model", "unsupported model")),
    ("rate_limit", ("429", "rate limit", "rate_limit", "too many requests", "resource_exhausted")),
    ("context", ("context length", "context window", "context_length", "too long", "maximum context")),
    ("server", ("500", "502", "503", "504", "529", "overloaded", "internal server error", "server error",
                "unavailable", "high demand")),  # codex words a 5xx server_error as "experiencing high demand"
    ("network", ("connection", "network", "timed out", "timeout", "econnrefused", "enotfound", "dns")),
)


def classify(message: str, also: str = "") -> Failure | None:
    """The cause an error message (or `also`, e.g. its error type) names, by its words; None: none we know."""
    lowered = f"{message} {also}".lower()
    for cause, words in _CAUSE_WORDS:
        if any(word in lowered for word in words):
            return Failure(cause, short(message))
    return None
