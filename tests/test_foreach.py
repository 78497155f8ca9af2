"""`foreach` fan-out end to end on command workers: expansion, add/remove a file, joins, errors with positions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RUN_DIR, Repo


def config(repo: Repo, tasks: list[dict[str, Any]], **top: Any) -> None:
    """rlm.yaml whose command workers are the fake agent (each writes a report naming itself)."""
    repo.write_command(tasks, goal="Fan out.", **top)


LINT = {"id": "lint-{{ item.stem }}", "goal": "Lint {{ item }}.", "inputs": ["{{ item }}"],
        "foreach": {"files": "src/**/*.py", "exclude": ["src/vendor"]}}
JOIN = {"id": "summary", "goal": "Sum up the lint reports.", "depends_on": ["lint"]}


@pytest.fixture
def fan(repo: Repo) -> Repo:
    for rel in ("src/a.py", "src/pkg/b.py", "src/vendor/c.py", "src/notes.txt"):
        repo.write(f"# {rel}\n", rel)
    config(repo, [LINT, JOIN])
    return repo


def ran(repo: Repo) -> list[str]:
    """The workers started since the last call."""
    names = sorted(call["worker_id"] for call in repo.calls())
    repo.log.unlink(missing_ok=True)
    return names


@pytest.mark.slow
def test_a_glob_expands_to_one_task_per_file_and_the_join_waits_for_all(fan: Repo) -> None:
    result = fan.doit()
    assert result.code == 0, result.out + result.err
    assert ran(fan) == ["lint-a", "lint-b", "summary"]
    plan = json.loads(fan.path(f"{RUN_DIR}/plan.json").read_text(encoding="utf-8"))
    assert plan["fanouts"] == {"lint": ["lint-a", "lint-b"]}
    by_id = {t["id"]: t for t in plan["tasks"]}
    assert by_id["lint-b"]["foreach"] == {"name": "lint", "item": "src/pkg/b.py"}
    assert by_id["lint-b"]["goal"] == "Lint src/pkg/b.py."
    assert by_id["lint-b"]["inputs"] == ["src/pkg/b.py"]
    assert by_id["summary"]["depends_on"] == ["lint-a", "lint-b"]
    assert "foreach" not in by_id["summary"]
    # the join's prompt lists every generated report
    prompt = fan.path(f"{RUN_DIR}/artifacts/prompts/summary.md").read_text(encoding="utf-8")
    assert f"{RUN_DIR}/artifacts/reports/lint-a.md" in prompt and f"{RUN_DIR}/artifacts/reports/lint-b.md" in prompt
    again = fan.doit()
    assert again.code == 0
    assert ran(fan) == []  # an unchanged set runs nothing


@pytest.mark.slow
def test_adding_a_file_runs_its_task_and_the_join_only(fan: Repo) -> None:
    assert fan.doit().code == 0
    ran(fan)
    fan.write("# new\n", "src/new.py")
    assert fan.rlm("status").lines[:3] == [
        "run t: 4 tasks: 2 fresh, 1 stale, 1 missing, 0 invalid",
        "foreach  lint                           3 tasks: 2 fresh, 1 missing",
        f"stale    map:summary                    prompt_changed,input_changed,upstream_stale "
        f"(changed: {RUN_DIR}/artifacts/reports/lint-new.md; upstream: map:lint-new)  "
        f"{RUN_DIR}/artifacts/reports/summary.md",
    ]
    assert fan.doit().code == 0
    assert ran(fan) == ["lint-new", "summary"]


@pytest.mark.slow
def test_removing_a_file_drops_its_task_and_makes_the_join_stale(fan: Repo) -> None:
    assert fan.doit().code == 0
    ran(fan)
    fan.path("src/pkg/b.py").unlink()
    status = json.loads(fan.rlm("status", "--json").out)
    assert [t["id"] for t in status["tasks"]] == ["lint-a", "summary"]
    assert status["fanouts"] == {"lint": {"fresh": 1, "stale": 0, "missing": 0, "invalid": 0, "failed": 0,
                                          "running": 0, "interrupted": 0, "partial": 0, "conflict": 0}}
    assert status["tasks"][1]["reasons"] == ["prompt_changed", "input_changed"]
    assert fan.doit().code == 0
    assert ran(fan) == ["summary"]


@pytest.mark.slow
def test_editing_an_input_reruns_that_item_only(fan: Repo) -> None:
    assert fan.doit().code == 0
    ran(fan)
    fan.write("# changed\n", "src/a.py")
    assert fan.doit().code == 0
    assert ran(fan) == ["lint-a"]  # it wrote the same report again: the join has nothing new to read


def test_status_all_lists_every_generated_task(fan: Repo) -> None:
    result = fan.rlm("status", "--all")
    assert result.lines == [
        "run t: 3 tasks: 0 fresh, 0 stale, 3 missing, 0 invalid",
        f"missing  map:lint-a                     {RUN_DIR}/artifacts/reports/lint-a.md",
        f"missing  map:lint-b                     {RUN_DIR}/artifacts/reports/lint-b.md",
        f"missing  map:summary                    {RUN_DIR}/artifacts/reports/summary.md",
        # the join waits
        "next wave: 2 tasks in start order (map:lint-a, map:lint-b); `rlm run --wave` runs only these",
    ]


def test_render_names_the_expansion(fan: Repo) -> None:
    result = fan.rlm("render")
    assert result.lines == [
        f"rendered {RUN_DIR}/artifacts/context/run_contract.md and 3 prompts under {RUN_DIR}/artifacts/prompts/",
        f"foreach lint: 2 tasks; plan.json lists them: {RUN_DIR}/plan.json",
    ]


@pytest.mark.slow
def test_inline_items_and_an_items_file(repo: Repo) -> None:
    repo.write(json.dumps([{"name": "alpha", "path": "docs/a.md"}, {"name": "beta", "path": "docs/b.md"}]),
               "items.json")
    config(repo, [
        {"id": "topic-{{ item }}", "goal": "Study {{ item }} ({{ index }}).", "foreach": {"items": ["x", "y"]}},
        {"id": "doc-{{ item.name }}", "goal": "Read {{ item.path }}.", "context_paths": ["{{ item.path }}"],
         "foreach": {"name": "docs", "items_file": "items.json"}},
        {"id": "all", "goal": "Both.", "depends_on": ["topic", "docs", "doc-beta"]},
    ])
    assert repo.doit().code == 0
    assert ran(repo) == ["all", "doc-alpha", "doc-beta", "topic-x", "topic-y"]
    plan = json.loads(repo.path(f"{RUN_DIR}/plan.json").read_text(encoding="utf-8"))
    by_id = {t["id"]: t for t in plan["tasks"]}
    assert by_id["topic-y"]["goal"] == "Study y (1)."
    assert by_id["doc-alpha"]["foreach"] == {"name": "docs", "item": '{"name": "alpha", "path": "docs/a.md"}'}
    assert by_id["all"]["depends_on"] == ["topic-x", "topic-y", "doc-alpha", "doc-beta"]
    # an edited items file is a new plan: one more item, one more task
    repo.write(yaml.safe_dump(["x", "y", "z"]), "topics.yaml")
    data = yaml.safe_load(repo.path("rlm.yaml").read_text(encoding="utf-8"))
    data["tasks"][0]["foreach"] = {"items_file": "topics.yaml"}
    repo.write(data)
    assert repo.doit().code == 0
    assert ran(repo) == ["all", "topic-z"]
    repo.write(yaml.safe_dump(["x", "y", "z", "w"]), "topics.yaml")
    assert repo.doit().code == 0
    assert ran(repo) == ["all", "topic-w"]


def errors(repo: Repo, text: str) -> list[str]:
    repo.write(text)
    result = repo.rlm("validate")
    assert result.code == 2
    return result.err.splitlines()


HEAD = """\
version: 1
run_id: t
goal: g
agent: {kind: command, command: [x]}
tasks:
"""


def test_colliding_generated_ids_name_both_items(fan: Repo) -> None:
    fan.write("# other a\n", "src/pkg/a.py")
    assert errors(fan, HEAD + """\
  - id: "lint-{{ item.stem }}"
    goal: "Lint {{ item }}"
    foreach: {files: "src/**/*.py"}
""") == ["rlm.yaml:6:9: tasks[0].id: duplicate task id 'lint-a' (item 'src/pkg/a.py') "
         "(first defined at tasks[0] (item 'src/a.py'))"]


def test_a_generated_id_that_collides_with_a_written_one(fan: Repo) -> None:
    assert errors(fan, HEAD + """\
  - id: lint-a
    goal: by hand
  - id: "lint-{{ item.stem }}"
    goal: "Lint {{ item }}"
    foreach: {files: "src/*.py"}
""") == ["rlm.yaml:8:9: tasks[1].id: duplicate task id 'lint-a' (item 'src/a.py') (first defined at tasks[0])"]


def test_errors_point_at_the_foreach_task(fan: Repo) -> None:
    assert errors(fan, HEAD + """\
  - id: "lint-{{ item.stem }}"
    goal: "Lint {{ item.missing_attr }}"
    foreach: {files: "src/*.py"}
  - id: "doc-{{ item }}"
    goal: d
    foreach: {items_file: nowhere.json}
  - id: "x-{{ item }}"
    goal: d
    foreach: {files: "../*.py"}
  - id: "y-{{ item }}"
    goal: d
    foreach: {items: [a], files: "*.py"}
  - id: "{{ item }}"
    goal: d
    foreach: {items: [a]}
  - id: s
    goal: s
    depends_on: [lint, docs]
""") == [
        "rlm.yaml:7:11: tasks[0].goal: for item 'src/a.py': undefined in \"Lint {{ item.missing_attr }}\": "
        "'rlm_tasks.config.foreach.PathItem object' has no attribute 'missing_attr'",
        "rlm.yaml:11:27: tasks[1].foreach.items_file: items_file 'nowhere.json' does not exist",
        "rlm.yaml:14:22: tasks[2].foreach.files: files pattern \"../*.py\" must be relative to the repository "
        "root and stay inside it",
        "rlm.yaml:17:14: tasks[3].foreach: give exactly one of files, items, items_file (got files and items)",
        "rlm.yaml:18:9: tasks[4].id: fan-out name \"\" is not a valid id; set foreach.name (the id other tasks "
        "use in depends_on to wait for every generated task)",
        "rlm.yaml:23:24: tasks[5].depends_on[1]: unknown task 'docs' (did you mean 'doc'?); known: doc, lint, s, x, "
        "y",
    ]


def test_a_symlink_out_of_the_repository_is_refused(fan: Repo) -> None:
    os.symlink("/etc/passwd", fan.path("src/leak.py"))
    assert errors(fan, HEAD + """\
  - id: "lint-{{ item.stem }}"
    goal: g
    foreach: {files: "src/*.py"}
""") == ["rlm.yaml:8:22: tasks[0].foreach.files: 'src/leak.py' is a symlink out of the repository"]


def test_bad_items_files(repo: Repo) -> None:
    repo.write("[1, NaN]", "nan.json")
    repo.write("{a: 1}\n", "map.yaml")
    repo.write("[ok, '']\n", "empty.yaml")
    assert errors(repo, HEAD + """\
  - {id: "a-{{ item }}", goal: g, foreach: {items_file: nan.json}}
  - {id: "b-{{ item }}", goal: g, foreach: {items_file: map.yaml}}
  - {id: "c-{{ item }}", goal: g, foreach: {items_file: empty.yaml}}
  - {id: "d-{{ item }}", goal: g, foreach: {items: [ok, "bad id"]}}
""") == [
        "rlm.yaml:6:57: tasks[0].foreach.items_file: items_file 'nan.json': NaN is not a number JSON allows",
        "rlm.yaml:7:57: tasks[1].foreach.items_file: items_file 'map.yaml' must hold a list of strings or "
        "mappings, got a mapping",
        "rlm.yaml:8:57: tasks[2].foreach.items_file: item 1 must be a non-empty string or mapping, got a string (\"\")",
        "rlm.yaml:9:10: tasks[3].id: generated id \"d-bad id\" (item 'bad id') does not match the pattern "
        "^[A-Za-z0-9][A-Za-z0-9._-]*$",
    ]



def test_items_files_that_would_crash_or_hang(repo: Repo) -> None:
    repo.write('[{"name": "a\\u0000b"}]', "nul.json")
    repo.write("[" * 100_000, "deep.json")
    repo.write("- {name: a, weight: .inf}\n", "inf.yaml")
    os.mkfifo(repo.path("pipe.json"))  # reading it would block validation for ever
    assert errors(repo, HEAD + """\
  - {id: "a-{{ item.name }}", goal: g, foreach: {items_file: nul.json}}
  - {id: "b-{{ item.name }}", goal: g, foreach: {items_file: deep.json}}
  - {id: "c-{{ item.name }}", goal: g, foreach: {items_file: inf.yaml}}
  - {id: "d-{{ item.name }}", goal: g, foreach: {items_file: pipe.json}}
""") == [
        "rlm.yaml:6:62: tasks[0].foreach.items_file: items_file 'nul.json': \"a\\u0000b\" contains a NUL character",
        "rlm.yaml:7:62: tasks[1].foreach.items_file: items_file 'deep.json': nested too deeply",
        "rlm.yaml:8:62: tasks[2].foreach.items_file: items_file 'inf.yaml': inf is not allowed: numbers must be finite",
        "rlm.yaml:9:62: tasks[3].foreach.items_file: items_file 'pipe.json' is not a regular file",
    ]

def test_report_paths_from_templates_and_their_collisions(repo: Repo) -> None:
    config(repo, [{"id": "t-{{ index }}", "goal": "g", "report_path": "reports/{{ item.stem }}.md",
                   "foreach": {"items": ["a/x.py", "b/y.py"]}}])
    assert repo.doit().code == 0
    assert sorted(p.name for p in repo.path("reports").iterdir()) == ["x.md", "y.md"]
    assert errors(repo, HEAD + """\
  - {id: "t-{{ index }}", goal: g, report_path: "reports/{{ item.stem }}.md", foreach: {items: [a/x.py, b/x.py]}}
""") == ["rlm.yaml:6:49: tasks[0].report_path: report_path 'reports/x.md' is also the report of task 't-0'"]


def test_an_item_with_a_line_break_is_shown_on_one_line(repo: Repo) -> None:
    assert errors(repo, HEAD + """\
  - {id: "t-{{ item }}", goal: g, foreach: {items: ["a\\nb"]}}
""") == ['rlm.yaml:6:10: tasks[0].id: generated id "t-a\\nb" (item \'"a\\nb"\') does not match the pattern '
         "^[A-Za-z0-9][A-Za-z0-9._-]*$"]


def test_generated_tasks_own_their_items_and_overlaps_point_at_the_fan_out(fan: Repo) -> None:
    config(fan, [{**LINT, "owns": ["{{ item }}"]}, JOIN])
    assert fan.rlm("validate").code == 0
    assert errors(fan, HEAD + """\
  - id: "lint-{{ item.stem }}"
    goal: g
    foreach: {files: "src/*.py", exclude: [src/notes.txt]}
    owns: [src/]
  - {id: "other-{{ item }}", goal: g, foreach: {items: [b]}, owns: [src/a.py]}
  - {id: same, goal: g, foreach: {items: [x, y]}}
""") == [
        "rlm.yaml:10:69: tasks[1].owns[0]: 'src/a.py' overlaps 'src/' owned by task 'lint-a' (tasks[0].owns[0]), "
        "and 'lint-a' and 'other-b' can run at the same time: both own src/a.py; make one wait for the other with "
        "depends_on, e.g. `depends_on: [lint-a]` on task 'other-b'",
        "rlm.yaml:11:10: tasks[2].id: with foreach, id is a template over item (e.g. \"same-{{ item.slug }}\"), "
        "or every item gets the same id 'same'",
    ]


def test_too_many_items(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm_tasks.config import fanout_items

    monkeypatch.setattr(fanout_items, "MAX_ITEMS", 2)
    assert errors(repo, HEAD + """\
  - {id: "a-{{ item }}", goal: g, foreach: {items: [x, y, z]}}
""") == ["rlm.yaml:6:52: tasks[0].foreach.items: 3 items, more than the 2 a fan-out may have; narrow it "
         "(exclude:, a smaller glob) or split it"]


def test_too_many_files_by_the_watch_cap(repo: Repo) -> None:
    for name in ("a", "b", "c"):
        repo.write("\n", f"src/{name}.py")
    assert errors(repo, HEAD.replace("tasks:", "budget: {max_watch_files: 2}\ntasks:") + """\
  - {id: "a-{{ item.stem }}", goal: g, foreach: {files: "src/*.py"}}
""") == ["rlm.yaml:7:57: tasks[0].foreach.files: matches more than budget.max_watch_files = 2 files; narrow it "
         "(exclude:, a smaller glob) or split it"]


def test_a_glob_over_reports_is_refused(repo: Repo) -> None:
    repo.write("# notes\n", "notes/a.md")
    repo.write("# s\n", "notes/summary.md")
    assert errors(repo, HEAD + """\
  - {id: "n-{{ item.stem }}", goal: g, foreach: {files: "notes/*.md"}}
  - {id: s, goal: g, report_path: notes/summary.md}
""") == ["rlm.yaml:6:57: tasks[0].foreach.files: matches 'notes/summary.md', the report of task 's'; a fan-out "
         "over reports grows with every run: exclude it"]


def test_globs_never_match_git_or_rlm_state(repo: Repo) -> None:
    for rel in (".git/hooks/x.py", ".rlm/cache/y.py", "z.py"):
        repo.write("\n", rel)
    repo.write(HEAD + '  - {id: "f-{{ item.slug }}", goal: g, foreach: {files: "**/*.py"}}\n')
    result = repo.rlm("render")
    assert result.code == 0, result.err
    assert json.loads(Path(repo.path(f"{RUN_DIR}/plan.json")).read_text(encoding="utf-8"))["fanouts"] == {
        "f": ["f-z.py"]}


# ---- the glob matcher, against a plain reference ----------------------------------------------------------

def reference_match(pattern: list[str], path: list[str]) -> bool:
    """Segment by segment with fnmatch; `**` is any number of segments, at the end at least one."""
    import fnmatch

    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        starts = range(1 if not rest else 0, len(path) + 1)
        return any(reference_match(rest, path[i:]) for i in starts)
    return bool(path) and fnmatch.fnmatchcase(path[0], head) and reference_match(rest, path[1:])


def test_compile_exact_matches_like_the_reference() -> None:
    """Every pattern of up to 3 segments against every path of up to 3 (hypothesis would write .hypothesis/)."""
    import itertools

    from rlm_tasks.config.ownership import compile_exact

    tokens = ["a", "*", "?", "**", "[ab]", "*.py"]
    names = ["a", "b", "ab", "x.py", "a.py"]
    patterns = [list(p) for n in (1, 2, 3) for p in itertools.product(tokens, repeat=n)]
    paths = [list(p) for n in (1, 2, 3) for p in itertools.product(names, repeat=n)]
    wrong = [("/".join(p), "/".join(q)) for p in patterns for q in paths
             if bool(compile_exact("/".join(p)).match("/".join(q))) != reference_match(p, q)]
    assert wrong == []
