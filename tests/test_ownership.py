"""Disjoint file ownership: overlaps between tasks that can run at once are config errors; prompts say who owns what."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Repo

from rlm_tasks.config.ownership import matches, patterns_overlap
from rlm_tasks.config.plan import load_plan
from rlm_tasks.config.records import ConfigError
from rlm_tasks.layout import RunLayout
from rlm_tasks.render import jinja

HEAD = """\
version: 1
run_id: r
goal: g
agent: {kind: command, command: ["true"]}
"""


def load(root: Path, body: str):
    (root / "rlm.yaml").write_text(HEAD + body)
    return load_plan(root / "rlm.yaml")


def problems(root: Path, body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(root, body)
    return [line.replace(str(root / "rlm.yaml"), "rlm.yaml") for line in caught.value.problems]


@pytest.fixture
def owned(repo: Repo) -> Path:
    """The harness's repository with a few files for tasks to own."""
    for name in ("src/app/core.py", "src/app/cli.py", "src/lib/util.py", "docs/guide.md"):
        repo.write("x\n", name)
    return repo.root


def test_siblings_owning_the_same_files_are_an_error(owned: Path) -> None:
    body = """\
tasks:
  - id: core
    goal: edit the core
    owns: [src/app/core.py, docs/]
  - id: everything
    goal: edit the app
    owns: ["src/app/*.py"]
"""
    assert problems(owned, body) == [
        "rlm.yaml:11:12: tasks[1].owns[0]: 'src/app/*.py' overlaps 'src/app/core.py' owned by task 'core' "
        "(tasks[0].owns[0]), and 'core' and 'everything' can run at the same time: both own src/app/core.py; "
        "make one wait for the other with depends_on, e.g. `depends_on: [core]` on task 'everything'"]


def test_tasks_ordered_by_depends_on_may_own_the_same_files(owned: Path) -> None:
    plan = load(owned, """\
tasks:
  - id: first
    goal: g
    owns: [src/]
  - id: middle
    goal: g
    depends_on: [first]
  - id: last
    goal: g
    depends_on: [middle]
    owns: [src/app/**]
verify:
  - id: check
    goal: g
    depends_on: [last]
    owns: [src/lib/util.py]
""")
    assert plan.task("last").owns == ("src/app/**",)


def test_disjoint_owners_are_fine(owned: Path) -> None:
    load(owned, """\
tasks:
  - {id: app, goal: g, owns: ["src/app/**"]}
  - {id: lib, goal: g, owns: [src/lib]}
  - {id: docs, goal: g, owns: ["docs/*.md", "src/*.txt"]}
  - {id: reader, goal: g}
""")


def test_patterns_matching_no_file_yet_are_compared_as_patterns(owned: Path) -> None:
    body = """\
tasks:
  - {id: new, goal: g, owns: ["src/new/**/*.py"]}
  - {id: tests, goal: g, owns: ["src/*/test_*.py"]}
"""
    assert problems(owned, body) == [
        "rlm.yaml:7:33: tasks[1].owns[0]: 'src/*/test_*.py' overlaps 'src/new/**/*.py' owned by task "
        "'new' (tasks[0].owns[0]), and 'new' and 'tests' can run at the same time: the patterns can match the same "
        "files; make one wait for the other with depends_on, e.g. `depends_on: [new]` on task 'tests'"]


def test_existing_files_decide_when_both_patterns_match_some(owned: Path) -> None:
    # `src/*/core.py` and `src/lib/*` could meet at src/lib/core.py, which does not exist: no overlap.
    load(owned, """\
tasks:
  - {id: a, goal: g, owns: [src/*/core.py]}
  - {id: b, goal: g, owns: ["src/lib/*"]}
""")


def test_defaults_owns_shared_by_concurrent_tasks(owned: Path) -> None:
    body = """\
defaults:
  owns: [docs/]
tasks:
  - {id: a, goal: g}
  - {id: b, goal: g, owns: [src/]}
  - {id: c, goal: g}
verify:
  - {id: v, goal: g, owns: [src/lib/]}
"""
    assert [p.split(": ")[1] for p in problems(owned, body)] == ["defaults.owns[0]", "verify[0].owns[0]"]
    assert "'a' and 'c' can run at the same time: both own docs/guide.md" in problems(owned, body)[0]
    assert "'b' and 'v' can run at the same time: both own src/lib/util.py" in problems(owned, body)[1]


@pytest.mark.parametrize(("pattern", "path", "owned"), [
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/pkg/a.py", False),
    ("src/pkg", "src/pkg/deep/a.py", True),
    ("src/pkg/", "src/pkg/a.py", True),
    ("src/**", "src", True),
    ("src/**", "srcs/a", False),
    ("**/*.md", "a/b/c.md", True),
    ("**/*.md", "c.md", True),
    ("[ab].txt", "a.txt", True),
    ("[!ab].txt", "a.txt", False),
    ("?.md", "ab.md", False),
])
def test_what_a_pattern_owns(pattern: str, path: str, owned: bool) -> None:
    assert matches(pattern, path) is owned


@pytest.mark.parametrize(("a", "b", "overlap"), [
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/*.md", False),
    ("a/*", "*/b", True),
    ("a/*.py", "b/*.py", False),
    ("**/test_*.py", "tests/*.py", True),
    ("docs/[ab]*", "docs/c*", False),
    ("docs/[!ab]*", "docs/c*", True),
    ("lib/*_test.go", "lib/foo.go", False),
    ("lib/*_test.go", "lib/*.go", True),
    ("a/b", "a", True),
    ("a/**/c", "a/b", True),
])
def test_pattern_overlap(a: str, b: str, overlap: bool) -> None:
    assert patterns_overlap(a, b) is overlap
    assert patterns_overlap(b, a) is overlap


def test_each_prompt_names_its_own_files_and_the_contract_no_task(owned: Path) -> None:
    plan = load(owned, """\
tasks:
  - {id: app, goal: g, owns: ["src/app/**", docs/guide.md]}
  - {id: reader, goal: g}
""")
    contract = jinja.render_contract(plan)
    assert "ownership" not in contract.lower()
    assert "`app`" not in contract and "src/app" not in contract  # per-task information reaches only its prompt
    layout = RunLayout(plan.root, plan.run_id)
    prompt = jinja.render_prompt(plan, plan.task("app"), layout)
    assert ("## Files you own\nEdit only these files (a pattern owns everything beneath it); every other file is "
            "read-only for you:\n- `src/app/**`\n- `docs/guide.md`\n\n## Your report") in prompt
    assert "Files you own" not in jinja.render_prompt(plan, plan.task("reader"), layout)


def test_the_contract_is_the_same_whoever_owns_what(owned: Path) -> None:
    plan = load(owned, "tasks:\n  - {id: a, goal: g}\n  - {id: b, goal: g}\n")
    owning = load(owned, "tasks:\n  - {id: a, goal: g}\n  - {id: b, goal: g, owns: [src/b.py]}\n")
    assert jinja.render_contract(plan) == jinja.render_contract(owning)
