"""Value rules JSON Schema cannot state: finite numbers, no NUL, ids without line breaks, env names,
non-blank section names, and `agent.command` templates that will render.

Each check yields (key path, message, points at the key) like schema.problems, so every mistake is
reported with FILE:LINE:COL by `rlm validate` instead of failing a worker at run time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from rlm_tasks import sandbox
from rlm_tasks.config.schema import suggest
from rlm_tasks.config.yamlpos import KeyPath

Problem = tuple[KeyPath, str, bool]

MAX_ID_LENGTH = 100  # rlm.schema.json task id maxLength; ids name files (prompts, logs, reports)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What an `agent.command` item may refer to (render/jinja.command_context; tests keep the two in step).
COMMAND_VARIABLES = frozenset({
    "run_id", "goal", "success_criteria", "non_goals", "hint_paths", "scope", "invariants", "sequence",
    "verification", "failure_policy", "ownership", "run_goal", "task", "worker_id", "mode", "granularity",
    "compute_tier", "model", "effort", "task_goal", "report_path", "prompt_path", "contract_path", "run_dir",
    "input_reports", "inputs", "context_paths", "owns", "required_sections", "progress_every", "stall_after",
    "envelope", "envelope_json",
    "python", "root", "attempt",
})


def problems(data: Any) -> Iterator[Problem]:
    yield from _scalars(data, ())
    if not isinstance(data, dict):
        return
    if isinstance(data.get("run_id"), str):
        yield from _one_line(("run_id",), data["run_id"])
    blocks: list[tuple[KeyPath, Any]] = [(("agent",), data.get("agent")),
                                         (("defaults", "agent"), _get(data, "defaults", "agent"))]
    for section in ("tasks", "verify"):
        tasks = data.get(section)
        for i, task in enumerate(tasks if isinstance(tasks, list) else []):
            if not isinstance(task, dict):
                continue
            if isinstance(task.get("id"), str):
                yield from _one_line((section, i, "id"), task["id"])
            blocks.append(((section, i, "agent"), task.get("agent")))
            yield from _sections((section, i, "required_sections"), task.get("required_sections"))
    yield from _sections(("defaults", "required_sections"), _get(data, "defaults", "required_sections"))
    for path, agent in blocks:
        if isinstance(agent, dict):
            yield from _env((*path, "env"), agent.get("env"))
            yield from _command((*path, "command"), agent.get("command"))
    yield from _env(("contract", "verification", "env"), _get(data, "contract", "verification", "env"))


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _scalars(value: Any, path: KeyPath) -> Iterator[Problem]:
    """NaN/±Infinity and NUL characters, anywhere in the document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if "\0" in key:
                yield (*path, key), "key contains a NUL character", True
            yield from _scalars(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _scalars(item, (*path, i))
    elif isinstance(value, float) and not math.isfinite(value):
        yield path, f"{value} is not allowed: numbers must be finite", False
    elif isinstance(value, str) and "\0" in value:
        yield path, "contains a NUL character", False


def _one_line(path: KeyPath, value: str) -> Iterator[Problem]:
    # The schema's `$` also matches before a trailing newline (Python's re.search), so say it here.
    if "\n" in value or "\r" in value:
        yield path, f"{value!r} must not contain a line break", False


def _sections(path: KeyPath, value: Any) -> Iterator[Problem]:
    for i, item in enumerate(value if isinstance(value, list) else []):
        if isinstance(item, str) and not item.strip():
            yield (*path, i), "a required section needs a heading text, got an empty one", False


def _env(path: KeyPath, env: Any) -> Iterator[Problem]:
    if not isinstance(env, dict):
        return
    for name in env:
        if not ENV_NAME.fullmatch(name):
            yield (*path, name), (f"environment variable name {name!r} is not valid "
                                  "(letters, digits and _, not starting with a digit)"), True


def _command(path: KeyPath, command: Any) -> Iterator[Problem]:
    if not isinstance(command, list):
        return
    import jinja2
    from jinja2 import meta

    env = sandbox.environment()
    for i, item in enumerate(command):
        if not isinstance(item, str) or ("{" not in item):
            continue
        try:
            names = meta.find_undeclared_variables(env.parse(item))
        except jinja2.TemplateSyntaxError as exc:
            yield (*path, i), f"template syntax error in {item!r}: {exc.message}", False
            continue
        unknown = sorted(names - COMMAND_VARIABLES)
        if unknown:
            yield (*path, i), (f"undefined variable '{unknown[0]}' in {item!r}{suggest(unknown[0], COMMAND_VARIABLES)}"
                               f"; known: {', '.join(sorted(COMMAND_VARIABLES))}"), False
