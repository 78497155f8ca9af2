"""One vocabulary: task states and attempt outcomes are each defined once (rlm_tasks/vocabulary.py, and
schemas/vocabulary.schema.json saying the same), and every schema refers to that definition."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import state_schemas

from rlm_tasks.agents.base import CAUSES
from rlm_tasks.resources import SCHEMA_DIR
from rlm_tasks.vocabulary import CAUSE_TEXT, Cause, Outcome, State

VOCABULARY = json.loads((SCHEMA_DIR / "vocabulary.schema.json").read_text(encoding="utf-8"))["$defs"]
STATE_REF = "vocabulary.schema.json#/$defs/task_state"
OUTCOME_REF = "vocabulary.schema.json#/$defs/attempt_outcome"
COUNTS_REF = "vocabulary.schema.json#/$defs/state_counts"
CAUSE_REF = "vocabulary.schema.json#/$defs/attempt_cause"


def test_the_schema_states_the_same_values_as_the_enums() -> None:
    assert VOCABULARY["task_state"]["enum"] == [s.value for s in State]
    assert VOCABULARY["attempt_outcome"]["enum"] == [o.value for o in Outcome]
    assert VOCABULARY["attempt_cause"]["enum"] == [c.value for c in Cause]
    assert set(CAUSE_TEXT) == set(Cause)
    # the causes an agent kind reads from its events (agents/base.py), and one of rlm's own
    assert {c.value for c in Cause} == {*CAUSES, Cause.AGENT_UNAVAILABLE.value}


def _properties(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(where, property name, its schema) for every property declared anywhere in a schema."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{path}/{name}", name, sub
        for key, value in node.items():
            yield from _properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _properties(value, f"{path}/{i}")


def test_every_schema_takes_states_and_outcomes_from_the_vocabulary() -> None:
    own: list[str] = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        if path.name in ("vocabulary.schema.json", "rlm.schema.json"):
            continue
        schema = json.loads(path.read_text(encoding="utf-8"))
        for where, name, sub in _properties(schema):
            wanted = {"outcome": OUTCOME_REF, "state": STATE_REF, "counts": COUNTS_REF, "cause": CAUSE_REF}.get(name)
            if path.name == "status.schema.json" and where == "/properties/final/state":
                continue  # status --json's `final`: whether final.json is current, not a task's state
            if path.name == "event.schema.json" and where == "/outcome":
                continue  # one field for every event kind: an attempt's outcome, or a gate's or a merge's
            if wanted is not None and isinstance(sub, dict) and sub.get("$ref") != wanted:
                own.append(f"{path.name}{where}")
    assert own == []


def test_a_state_file_off_the_vocabulary_is_caught(tmp_path: Path) -> None:
    """The check every test runs at its end (conftest) fails on an outcome the vocabulary does not have."""
    folder = tmp_path / ".rlm" / "runs" / "r" / "artifacts" / "attempts"
    folder.mkdir(parents=True)
    attempt = {"attempt": 1, "compute_tier": "standard", "outcome": "ok", "log_path": "x.log",
               "started_at": None, "finished_at": None}
    (folder / "a.json").write_text(json.dumps({"version": 1, "run_id": "r", "worker_id": "a",
                                               "attempts": [attempt]}))
    assert state_schemas.problems(tmp_path) == []
    for outcome in Outcome:
        attempt["outcome"] = outcome.value
        (folder / "a.json").write_text(json.dumps({"version": 1, "run_id": "r", "worker_id": "a",
                                                   "attempts": [attempt]}))
        assert state_schemas.problems(tmp_path) == []
    attempt["outcome"] = "gave_up"
    (folder / "a.json").write_text(json.dumps({"version": 1, "run_id": "r", "worker_id": "a", "attempts": [attempt]}))
    [problem] = state_schemas.problems(tmp_path)
    assert problem.startswith(f"{folder / 'a.json'}: attempts.schema.json: attempts[0].outcome: must be one of: ")
    (folder / "a.json").unlink()
    (tmp_path / ".rlm" / "local").mkdir()
    (tmp_path / ".rlm" / "local" / "mystery.json").write_text("{}")
    assert state_schemas.problems(tmp_path) == [
        f"{tmp_path / '.rlm' / 'local' / 'mystery.json'}: written by rlm with no schema in tests/state_schemas.py"]
    (tmp_path / ".rlm" / "local" / "mystery.json").unlink()
