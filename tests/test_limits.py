"""Numbers and strings, bounded YAML: refused with FILE:LINE:COL and exit 2, never a traceback."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from conftest import Repo
from test_cleanup import NOW, log_lines, make_archive

from rlm_tasks.config import values
from rlm_tasks.config.plan import load_plan
from rlm_tasks.layout import RunLayout
from rlm_tasks.lifecycle import cleanup
from rlm_tasks.render.jinja import command_context

HEADER = "version: 1\nrun_id: r\ngoal: g\n"


def invalid(repo: Repo, text: str) -> list[str]:
    repo.write(textwrap.dedent(text))
    result = repo.rlm("validate")
    assert (result.code, result.out) == (2, "")
    return result.err.splitlines()


@pytest.mark.parametrize(("field", "where"), [
    ("report_path: \"a\\0b\"", "report_path"), ("inputs: [\"a\\0b\"]", "inputs[0]"),
    ("watch: [\"a\\0b\"]", "watch[0]"), ("owns: [\"a\\0b\"]", "owns[0]"),
    ("context_paths: [\"a\\0b\"]", "context_paths[0]"), ("foreach: {files: \"a\\0b\"}", "foreach.files"),
    ("foreach: {files: x, exclude: \"a\\0b\"}", "foreach.exclude"),
    ("foreach: {items_file: \"a\\0b\"}", "foreach.items_file"),
])
def test_a_nul_in_a_path_is_one_line_not_a_crash(repo: Repo, field: str, where: str) -> None:
    """No file system call takes a path with a NUL (found by tests/test_fuzz.py)."""
    task_id = "a-{{ item }}" if field.startswith("foreach") else "a"
    line = f"tasks: [{{id: \"{task_id}\", goal: A, {field}}}]"
    column = line.index('"a\\0b"') + 1
    lines = [shown for shown in invalid(repo, HEADER + line + "\n") if ": warning: " not in shown]
    assert lines == [f"rlm.yaml:4:{column}: tasks[0].{where}: contains a NUL character"]


def test_a_line_separator_in_a_key_stays_on_its_line(repo: Repo) -> None:
    """U+0085, U+2028 and U+2029 break str.splitlines() too (found by tests/test_fuzz.py)."""
    assert invalid(repo, HEADER + 'budget: {" \\x85\\u2028\\u2029": 1}\ntasks: [{id: a, goal: A}]\n') == [
        "rlm.yaml:4:10: budget. \\x85\\u2028\\u2029: unknown key ' \\x85\\u2028\\u2029'"]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN", "+.Inf"])
def test_non_finite_numbers_are_refused(repo: Repo, value: str) -> None:
    shown = {".nan": "nan", ".inf": "inf", "-.inf": "-inf", ".NaN": "nan", "+.Inf": "inf"}[value]
    also = ["rlm.yaml:4:39: tasks[0].stall_after: must be > 0; got -inf"] if value == "-.inf" else []
    assert invalid(repo, HEADER + f"tasks: [{{id: a, goal: A, stall_after: {value}}}]\n") == [
        *also, f"rlm.yaml:4:39: tasks[0].stall_after: {shown} is not allowed: numbers must be finite"]


def test_nan_in_lifecycle_and_a_huge_ttl_are_refused(repo: Repo) -> None:
    assert invalid(repo, HEADER + "lifecycle: {ttl_days: .nan, lock_stale_hours: 1.0e+300}\ntasks: [{id: a, goal: A}]\n"
                   ) == ["rlm.yaml:4:23: lifecycle.ttl_days: nan is not allowed: numbers must be finite",
                         "rlm.yaml:4:47: lifecycle.lock_stale_hours: must be <= 87600; got 1e+300"]


def test_absurd_numbers_exit_2(repo: Repo) -> None:
    assert invalid(repo, HEADER + "budget: {max_inflight: 100000}\ntasks: [{id: a, goal: A, retries: 1000000}]\n"
                   ) == ["rlm.yaml:4:24: budget.max_inflight: must be <= 256; got 100000",
                         "rlm.yaml:5:35: tasks[0].retries: must be <= 100; got 1000000"]


def test_ids_with_a_trailing_newline_are_refused(repo: Repo) -> None:
    assert invalid(repo, 'version: 1\nrun_id: "r\\n"\ngoal: g\ntasks: [{id: "a\\n", goal: A}]\n') == [
        "rlm.yaml:2:9: run_id: 'r\\n' must not contain a line break",
        "rlm.yaml:4:14: tasks[0].id: 'a\\n' must not contain a line break"]


def test_long_ids_are_refused(repo: Repo) -> None:
    assert invalid(repo, f"version: 1\nrun_id: {'r' * 65}\ngoal: g\ntasks: [{{id: {'a' * 101}, goal: A}}]\n") == [
        "rlm.yaml:2:9: run_id: longer than 64 characters (65)",
        "rlm.yaml:4:14: tasks[0].id: longer than 100 characters (101)"]


def test_nul_anywhere_is_refused(repo: Repo) -> None:
    assert invalid(repo, HEADER + 'success_criteria: ["a\\0b"]\ntasks: [{id: a, goal: A, agent: {env: {"X\\0": y}}}]\n'
                   ) == ["rlm.yaml:4:20: success_criteria[0]: contains a NUL character",
                         "rlm.yaml:5:40: tasks[0].agent.env.X\\x00: key contains a NUL character",
                         "rlm.yaml:5:40: tasks[0].agent.env.X\\x00: environment variable name 'X\\x00' is not valid "
                         "(letters, digits and _, not starting with a digit)"]


def test_bad_env_names_and_blank_sections_are_refused(repo: Repo) -> None:
    assert invalid(repo, HEADER + textwrap.dedent("""\
        agent: {env: {1ST: x, "A=B": y, OK_1: z}}
        contract: {verification: {env: {"has space": v}}}
        tasks: [{id: a, goal: A, required_sections: ["  "]}]
        """)) == [
        "rlm.yaml:4:15: agent.env.1ST: environment variable name '1ST' is not valid "
        "(letters, digits and _, not starting with a digit)",
        "rlm.yaml:4:23: agent.env.A=B: environment variable name 'A=B' is not valid "
        "(letters, digits and _, not starting with a digit)",
        "rlm.yaml:5:33: contract.verification.env.has space: environment variable name 'has space' is not valid "
        "(letters, digits and _, not starting with a digit)",
        "rlm.yaml:6:46: tasks[0].required_sections[0]: a required section needs a heading text, got an empty one"]


def test_command_templates_are_checked_by_validate(repo: Repo) -> None:
    lines = invalid(repo, HEADER + textwrap.dedent("""\
        agent: {kind: command, command: ["{{ python }}", "{{ worker_idd }}", "{% if %}"]}
        tasks: [{id: a, goal: A}]
        """))
    assert lines[0].startswith("rlm.yaml:4:50: agent.command[1]: undefined variable 'worker_idd' in "
                               "'{{ worker_idd }}' (did you mean 'worker_id'?); known: attempt, compute_tier, ")
    assert lines[1:] == ["rlm.yaml:4:70: agent.command[2]: template syntax error in '{% if %}': "
                         "Expected an expression, got 'end of statement block'"]


def test_command_variables_match_what_the_runner_renders(repo: Repo) -> None:
    repo.write(HEADER + "tasks: [{id: a, goal: A}]\n")
    plan = load_plan()
    context = command_context(plan, plan.tasks[0], RunLayout(plan.root, plan.run_id))
    assert set(context) | {"model", "effort", "attempt"} == values.COMMAND_VARIABLES


def test_yaml_alias_bomb_is_refused(repo: Repo) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "\n".join(lines) + "\n"
    assert len(text) < 650
    assert invalid(repo, text) == ["rlm.yaml:6:8: (yaml): aliases expand to more than 100,000 nodes"]


def test_small_aliases_still_work(repo: Repo) -> None:
    repo.write(HEADER + "x: &env {A: b}\n".replace("x:", "tasks:\n  - {id: a, goal: A, agent: {env: &env {A: b}}}\n"
                                                   "  - {id: b, goal: B, agent: {env: *env}}\n#"))
    assert repo.rlm("validate").code == 0
    assert dict(load_plan().task("b").agent.env) == {"A": "b"}


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "a:\n" + "".join("  " * i + "b:\n"
                                                                                 for i in range(1, 3000))])
def test_deep_nesting_exits_2(repo: Repo, text: str) -> None:
    lines = invalid(repo, text)
    assert len(lines) == 1
    assert lines[0].endswith(": (yaml): nesting deeper than 64 levels")


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "-n", "-1"], "argument -n/--jobs: must be between 1 and 256, got -1"),
    (["run", "-n", "100000"], "argument -n/--jobs: must be between 1 and 256, got 100000"),
    (["archive", "--ttl-days", "nan"], "argument --ttl-days: must be a finite number, got 'nan'"),
    (["archive", "--ttl-days", "-1"], "argument --ttl-days: must be >= 0, got -1"),
    (["archive", "--ttl-days", "Infinity"], "argument --ttl-days: must be a finite number, got 'Infinity'"),
    (["reduce", "--stale-seconds", "nan"], "argument --stale-seconds: must be a finite number, got 'nan'"),
    (["wait", "--timeout", "inf"], "argument --timeout: must be a finite number, got 'inf'"),
])
@pytest.mark.slow
def test_number_flags_exit_2(repo: Repo, argv: list[str], message: str) -> None:
    result = repo.rlm_cli(*argv)
    assert result.code == 2
    assert result.err.splitlines()[-1].endswith(f": error: {message}")
    assert "Traceback" not in result.err


@pytest.mark.hand_made_state  # meta.json with garbage in it, on purpose
@pytest.mark.parametrize("ttl", ["NaN", "-Infinity", "-1", '"14"', "true", "1e999"])
def test_garbage_ttl_in_meta_json_never_deletes(tmp_path: Path, ttl: str) -> None:
    path = make_archive(tmp_path, "r-20200101T000000Z", 10_000)
    meta = path / "meta.json"
    text = meta.read_text().replace('"ttl_days": 14', f'"ttl_days": {ttl}')
    os.chmod(meta, 0o644)
    meta.write_text(text)
    result = cleanup.run(tmp_path, now=NOW)
    assert result.deleted == []
    assert cleanup.archive_ids(tmp_path) == ["r-20200101T000000Z"]
    shown = {"NaN": "", "-Infinity": "", "-1": "(-1)", '"14"': "('14')", "true": "(True)", "1e999": "(inf)"}[ttl]
    why = ("meta.json is missing or unreadable" if not shown
           else f"meta.json retention.ttl_days is not a finite number >= 0 {shown}")
    assert log_lines(tmp_path) == [f"2026-11-21T12:00:00Z kept-unreadable r-20200101T000000Z: {why}"]

