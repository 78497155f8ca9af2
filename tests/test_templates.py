"""docs/templates.md lists exactly the variables each template (and agent.command) is rendered with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
from conftest import Repo

from rlm_tasks.config import values
from rlm_tasks.config.plan import load_plan
from rlm_tasks.render import jinja

DOC = Path(__file__).resolve().parent.parent / "docs" / "templates.md"


def documented() -> dict[str, set[str]]:
    """Section heading → the backticked names in the first column of its tables."""
    sections: dict[str, set[str]] = {}
    heading = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            sections[heading] = set()
        elif (match := re.match(r"\| `([a-z_]+)` \|", line)) and heading:
            sections[heading].add(match.group(1))
    return sections


@pytest.fixture
def rendered(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Template name → the variables it was rendered with, from a real run, `rlm render` and `rlm final`."""
    repo.write_command([{"id": "a", "goal": "A", "owns": ["src/**"]}], {},
                       verify=[{"id": "v", "goal": "V", "depends_on": ["a"]}],
                       decision={"should_finish": True, "reason": "done"})
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    seen: dict[str, set[str]] = {}
    real = jinja._render

    def record(env: Any, name: str, context: dict[str, Any]) -> str:
        seen.setdefault(name, set()).update(context)
        return real(env, name, context)

    monkeypatch.setattr(jinja, "_render", record)
    assert repo.rlm("render").code == 0
    final = repo.rlm("final")
    assert final.code == 0, final.err
    return seen


@pytest.mark.slow
def test_the_doc_lists_what_each_template_gets(rendered: dict[str, set[str]]) -> None:
    doc = documented()
    plan = doc["Plan variables (every template)"]
    assert rendered == {
        jinja.CONTRACT_TEMPLATE: plan,
        jinja.PROMPT_TEMPLATE: plan | doc["worker_prompt.md.j2"],
        jinja.FINAL_TEMPLATE: plan | doc["final.md.j2"],
    }
    assert doc["run_contract.md.j2"] == set()


def test_the_doc_lists_what_a_command_item_may_use() -> None:
    doc = documented()
    prompt = doc["Plan variables (every template)"] | doc["worker_prompt.md.j2"]
    assert prompt | doc["agent.command items"] == values.COMMAND_VARIABLES


def test_the_doc_lists_the_filters_rlm_adds(tmp_path: Path) -> None:
    (tmp_path / "rlm.yaml").write_text("version: 1\nrun_id: r\ngoal: G\ntasks: [{id: a, goal: A}]\n")
    added = set(jinja.environment(load_plan(tmp_path / "rlm.yaml")).filters) - set(jinja2.Environment().filters)
    assert added == documented()["Filters"] == {"md", "code"}


def test_a_missing_or_extra_entry_is_noticed() -> None:
    doc = documented()
    assert "task_goal" in doc["worker_prompt.md.j2"] and "task_goal" not in doc["final.md.j2"]
    assert doc["final.md.j2"] == {"final", "reduce_state", "review", "mermaid_dag", "mermaid_gantt", "none_identified"}
