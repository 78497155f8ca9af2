"""rlm.yaml → a validated, frozen Plan. Every problem is reported at once as FILE:LINE:COL.

Reading and parsing live here; the records are in records.py, the checks past the schema in checks.py,
building the Plan from validated data in freeze.py.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from rlm_tasks.config import foreach, schema, values, yamlpos
from rlm_tasks.config.checks import Checker, one_line, well_formed
from rlm_tasks.config.freeze import freeze
from rlm_tasks.config.records import ConfigError, Plan
from rlm_tasks.layout import new_run_id


def load_plan(config_path: str | Path = "rlm.yaml", root: str | Path | None = None) -> Plan:
    """Read, validate and freeze one rlm.yaml; raise ConfigError listing every problem."""
    return load_plan_data(config_path, root)[0]


def load_plan_data(config_path: str | Path = "rlm.yaml", root: str | Path | None = None,
                   raw: bytes | None = None) -> tuple[Plan, Any]:
    """load_plan, and the parsed rlm.yaml it froze (what the validation cache keeps); `raw`: the file's bytes,
    already read."""
    path = Path(config_path)
    shown = str(config_path)
    try:
        if raw is None:
            raw = path.read_bytes()
        text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read()  # as read_text decodes it
    except FileNotFoundError:
        raise ConfigError([f"{shown}:1:1: (root): file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{shown}:1:1: (root): cannot read: {exc}"]) from None
    # the directory rlm.yaml is in, not the one a symlinked rlm.yaml points into
    base = Path(root) if root is not None else Path(os.path.abspath(path)).parent
    return _parse(text, shown, base.resolve(), path.resolve())


def parse_plan(text: str, shown: str, root: Path, config_path: Path) -> Plan:
    return _parse(text, shown, root, config_path)[0]


def _parse(text: str, shown: str, root: Path, config_path: Path) -> tuple[Plan, Any]:
    try:
        doc = yamlpos.load(text)
    except yamlpos.YamlSyntaxError as exc:
        pos = exc.position
        raise ConfigError([one_line(f"{shown}:{pos.line}:{pos.column}: (yaml): {exc}")]) from None
    try:
        config_rel = config_path.resolve().relative_to(root).as_posix()
    except ValueError:
        config_rel = config_path.name
    checker = Checker(doc, shown, root, config_rel)
    expansion: foreach.Expansion | None = None
    if doc.data is None:
        checker.add((), "file is empty; expected a mapping with at least run_id, goal and tasks")
    elif not isinstance(doc.data, dict):
        checker.add((), f"expected a mapping at the top level, got {schema.describe(doc.data)}")
    else:
        for path, message, at_key in schema.problems("rlm", doc.data):
            if path == () and message == "missing required key 'run_id'":
                # never made up here: a generated id would differ on every load, so the run would never be found
                message += (f"; name the run, e.g. `run_id: {new_run_id(root.name)}` (the workflow's "
                            "run_<UTC timestamp>_<slug>; `rlm init` writes one)")
            checker.add(path, message, at_key=at_key)
        for path, message, at_key in values.problems(doc.data):
            checker.add(path, message, at_key=at_key)
        if not checker.problems:
            expansion = foreach.expand(doc.data, root)
            checker.semantic(doc.data, expansion)
        else:
            # Still report duplicate ids, unknown dependencies, cycles... on the parts that are well formed.
            usable = well_formed(doc.data)
            checker.semantic(usable, foreach.expand(usable, root), partial=True)
    if checker.problems:
        raise ConfigError(checker.sorted_problems())
    plan = freeze(doc.data, root, config_path, expansion)
    # one line per place: a fan-out repeats its template's warning for every item
    return plan._replace(warnings=tuple(dict.fromkeys(line for *_, line in sorted(checker.warnings)))), doc.data

