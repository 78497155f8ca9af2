"""Any command: `agent.command` is the argv (each item a Jinja template over the task), prompt on stdin.

It prints no event stream: its usage, if any, is the `$RLM_USAGE_PATH` file it writes
(schemas/usage_file.schema.json), read by run/usage.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlm_tasks.agents.base import AgentSettings, Failure, SkillsHome, Usage

NAME = "command"
DEFAULT_BINARY: str | None = None
TIERS: Mapping[str, tuple[str, str | None]] = {}  # a command gets the run's tiers as {{ model }} / {{ effort }}
PRICES: Mapping[str, tuple[float, float, float]] = {}
SKILLS: SkillsHome | None = None
USAGE_MARKERS: tuple[bytes, ...] = ()
FAILURE_MARKERS: tuple[bytes, ...] = ()
VERSION_ARGV: tuple[str, ...] = ()
STARTER = """\
agent:                             # codex | claude | gemini | opencode | command; switching is this one block
  kind: command                    # a bundled worker, no model, no network: `doit` works offline at once
  command: ["{{ python }}", ".rlm/starter_worker.py"]
  timeout: 120                     # seconds; the whole process group is ended after it
"""


def config_problems(agent: Mapping[str, Any]) -> list[str]:
    return [] if agent.get("command") else ["agent kind 'command' needs 'command': the argv to run"]


def argv(agent: AgentSettings, model: str, effort: str | None) -> list[str]:
    return list(agent.command)


def report_mode(agent: AgentSettings) -> str:
    return agent.report


def stream(args: Sequence[str], argv: list[str]) -> bool:
    return False


def usage(events: list[dict[str, Any]]) -> Usage | None:
    return None


def log_line(event: dict[str, Any]) -> str | None:
    return None


def failure(events: list[dict[str, Any]]) -> Failure | None:
    return None


def sample_events(usage: Usage, text: str) -> list[dict[str, Any]]:
    return []
