"""Property-based: every generated rlm.yaml either validates or exits 2 with FILE:LINE:COL lines and no
traceback, and every one that validates renders. Bounded example counts keep CI fast; the database is off so a
run depends on nothing but the seed Hypothesis derives from the test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

pytestmark = pytest.mark.slow  # see CONTRIBUTING.md: the fast subset


@pytest.fixture(autouse=True)
def _hypothesis_home(tmp_path: Path) -> None:
    """Hypothesis keeps scratch files in its home directory: the test's own, like every write of a test."""
    set_hypothesis_home_dir(str(tmp_path / ".hypothesis"))


SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
LINE = re.compile(r"rlm\.yaml:\d+:\d+: \S.*")

# Values that probe the rules: odd numbers, odd strings, paths that try to escape, globs, templates.
numbers = st.one_of(st.integers(-3, 300), st.sampled_from([0, 1, 10**12, -(10**12)]),
                    st.floats(allow_nan=True, allow_infinity=True))
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["a", "A b", "", " ", "x\n", "a\0b", "{{ worker_id }}", "{{ nope }}", "{% if %}", "../up",
                     "/abs", "src/*.py", "**/*", ".git/x", ".rlm/runs/t/plan.json", "rlm.yaml", "dodo.py",
                     "docs/", "<script>", "[x](javascript:alert(1))", "# heading", "```"]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(texts, inner, max_size=3)), max_leaves=6)
TASK_KEYS = ["id", "goal", "mode", "granularity", "compute_tier", "depends_on", "inputs", "context_paths", "watch",
             "report_path", "required_sections", "agent", "retries", "escalate", "backoff_seconds", "stall_after",
             "owns", "progress_every", "join", "foreach", "bogus"]
AGENT_KEYS = ["kind", "binary", "args", "env", "sandbox", "timeout", "command", "report"]


@st.composite
def agents(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(AGENT_KEYS), unique=True, max_size=4))
    agent: dict[str, Any] = {k: draw(values) for k in keys}
    if draw(st.booleans()):
        agent["kind"] = draw(st.sampled_from(["codex", "claude", "command", "shell"]))
    if draw(st.booleans()):
        agent["command"] = draw(st.lists(texts, max_size=3))
    if draw(st.booleans()):
        agent["env"] = draw(st.dictionaries(texts, texts, max_size=2))
    return agent


@st.composite
def tasks(draw: st.DrawFn, ids: list[str]) -> dict[str, Any]:
    task: dict[str, Any] = {"id": draw(st.one_of(st.sampled_from(ids), texts)), "goal": draw(texts)}
    for key in draw(st.lists(st.sampled_from(TASK_KEYS), unique=True, max_size=4)):
        if key == "depends_on":
            task[key] = draw(st.lists(st.one_of(st.sampled_from(ids), texts), max_size=2))
        elif key == "agent":
            task[key] = draw(agents())
        else:
            task[key] = draw(values)
    return task


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    ids = ["a", "b", "c"]
    doc: dict[str, Any] = {"version": 1, "run_id": draw(st.one_of(st.just("t"), texts)), "goal": draw(texts),
                           "tasks": draw(st.lists(tasks(ids), max_size=3))}
    if draw(st.booleans()):
        doc["verify"] = draw(st.lists(tasks(ids), max_size=2))
    if draw(st.booleans()):
        doc["agent"] = draw(agents())
    for key in draw(st.lists(st.sampled_from(["budget", "lifecycle", "decision", "hint_paths", "templates_dir",
                                               "uses", "defaults", "tiers", "verify_k", "reduce", "taskz"]),
                             unique=True, max_size=3)):
        doc[key] = draw(values)
    if draw(st.booleans()):
        del doc["version"]
    return doc


def check(repo: Repo, text: str) -> None:
    repo.write(text)
    result = repo.rlm("validate")
    assert "Traceback" not in result.err
    if result.code == 2:
        lines = result.err.splitlines()
        assert lines, "exit 2 without saying why"
        assert all(LINE.fullmatch(line) for line in lines), lines
        return
    assert result.code == 0, (result.code, result.err)
    rendered = repo.rlm("render")
    assert (rendered.code, rendered.err) == (0, ""), rendered.err


@SETTINGS
@given(doc=documents())
def test_generated_documents_validate_or_exit_2_with_positions(repo: Repo, doc: dict[str, Any]) -> None:
    repo.write("x\n", "src/a.py")
    check(repo, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


@SETTINGS
@given(doc=documents(), cut=st.integers(0, 400), noise=st.text(max_size=8))
def test_mangled_text_validates_or_exits_2_with_positions(repo: Repo, doc: dict[str, Any], cut: int,
                                                          noise: str) -> None:
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    check(repo, text[:cut] + noise + text[cut:])
