"""No edit re-pays the run: adding, removing or editing a task leaves unrelated tasks fresh; a task that edits its
own inputs is not made stale by its own edits; an empty fan-out refuses; paths that point at nothing warn."""

from __future__ import annotations

from typing import Any

from conftest import Repo

TASKS: list[dict[str, Any]] = [{"id": "a", "goal": "A", "owns": ["src/a/"]}, {"id": "b", "goal": "B"},
                               {"id": "c", "goal": "C", "depends_on": ["a"]}]


def ran_after(repo: Repo, before: int) -> list[str]:
    return sorted(call["worker_id"] for call in repo.calls()[before:])


def test_adding_removing_or_editing_a_task_reruns_only_that_task(repo: Repo) -> None:
    repo.write_command(TASKS)
    assert repo.doit().code == 0
    n = len(repo.calls())
    # a new task that owns files: the contract is the same, no other report goes stale
    repo.write_command([*TASKS, {"id": "d", "goal": "D", "owns": ["src/d/"]}])
    check = repo.rlm("check")
    assert check.lines[0] == "run t: 4 tasks: 3 fresh, 0 stale, 1 missing, 0 invalid", check.out
    assert repo.doit().code == 0
    assert ran_after(repo, n) == ["d"]
    n = len(repo.calls())
    # editing one task's goal (and its owns) reruns it and what depends on it, nothing else
    repo.write_command([{"id": "a", "goal": "A, again", "owns": ["src/a/", "src/a2/"]}, *TASKS[1:],
                        {"id": "d", "goal": "D", "owns": ["src/d/"]}])
    assert repo.doit().code == 0
    assert ran_after(repo, n) == ["a", "c"]
    n = len(repo.calls())
    # removing a task reruns nothing
    repo.write_command([{"id": "a", "goal": "A, again", "owns": ["src/a/", "src/a2/"]}, *TASKS[1:]])
    assert repo.doit().code == 0
    assert ran_after(repo, n) == []
    assert repo.rlm("check").code == 0


def test_a_task_that_edits_its_own_inputs_stays_fresh(repo: Repo) -> None:
    repo.write("counter = 1\n", "src/state.py")
    repo.write("notes\n", "docs/notes.md")
    repo.write_command([{"id": "writer", "goal": "Bump the counter.", "inputs": ["src/state.py", "docs/notes.md"],
                         "owns": ["src/"]}],
                       {"writer": {"append": {"src/state.py": "counter += 1\n"}}})
    assert repo.doit().code == 0
    assert repo.rlm("check").code == 0  # its own edit of src/state.py does not make it stale
    assert repo.doit().code == 0
    assert len(repo.calls()) == 1
    repo.write("counter = 100\n", "src/state.py")  # someone else's edit does
    check = repo.rlm("check")
    assert check.code == 1 and "input_changed (changed: src/state.py)" in check.out
    repo.write("other notes\n", "docs/notes.md")  # and an input it does not own is as before
    assert "changed: docs/notes.md, src/state.py" in repo.rlm("check").out


def test_validate_explains_a_task_that_reads_what_it_owns(repo: Repo) -> None:
    repo.write("x = 1\n", "src/state.py")
    repo.write_command([{"id": "writer", "goal": "W", "inputs": ["src/state.py"], "owns": ["src/"]}])
    result = repo.rlm("validate")
    assert result.code == 0
    line = next(line for line in result.lines if "also owned" in line)
    assert line.startswith("rlm.yaml:") and line.endswith(
        ": tasks[0].inputs[0]: warning: 'src/state.py' is also owned by this task ('src/'): it reads what it edits; "
        "its own edits do not make it stale (that input's digest is taken when it finishes), anyone else's do")


def test_an_empty_foreach_is_refused_unless_allowed(repo: Repo) -> None:
    repo.write("x\n", "src/a.py")
    fanout = {"id": "lint-{{ item.stem }}", "goal": "Lint {{ item }}.", "foreach": {"files": "src/**/*.pyy"}}
    repo.write_command([fanout])
    result = repo.rlm("validate")
    lines = repo.path("rlm.yaml").read_text().splitlines()
    row = next(i for i, text in enumerate(lines, 1) if "files:" in text)
    col = lines[row - 1].index("files:") + len("files: ") + 1
    assert (result.code, result.err) == (2, (
        f"rlm.yaml:{row}:{col}: tasks[0].foreach.files: expands to no task (files gives no item); fix it, or set "
        "allow_empty: true on the task when an empty fan-out is expected\n"))
    assert repo.doit().code == 2 and repo.calls() == []
    repo.write_command([{**fanout, "allow_empty": True}, {"id": "other", "goal": "O"}])
    assert repo.rlm("validate").code == 0
    assert repo.doit().code == 0
    assert repo.ran() == ["other"]


def test_an_empty_items_file_is_refused_too(repo: Repo) -> None:
    repo.write("[]\n", "items.json")
    repo.write_command([{"id": "x-{{ item }}", "goal": "X", "foreach": {"items_file": "items.json"}}])
    result = repo.rlm("validate")
    assert result.code == 2 and result.err.endswith(
        ": tasks[0].foreach.items_file: expands to no task (items_file gives no item); fix it, or set "
        "allow_empty: true on the task when an empty fan-out is expected\n")


def test_context_and_hint_paths_that_do_not_exist_warn(repo: Repo) -> None:
    repo.write("x\n", "docs/real.md")
    repo.write_command([{"id": "a", "goal": "A", "context_paths": ["docs/real.md", "docs/typo.md"]}],
                       hint_paths=["docs/", "nowhere/"])
    result = repo.rlm("validate")
    assert result.code == 0
    warnings = [line for line in result.lines if ": warning: " in line]
    assert sorted(line.split(": ", 1)[1] for line in warnings) == [
        "hint_paths[1]: warning: 'nowhere/' does not exist: workers are pointed at nothing",
        "tasks[0].context_paths[1]: warning: 'docs/typo.md' does not exist: the worker is pointed at nothing",
    ]
