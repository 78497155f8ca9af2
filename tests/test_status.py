"""`rlm status [--json]` and `rlm check` (make -q for CI): states from files alone."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import LOCAL_RUN, RUN_DIR, Repo

from rlm_tasks.config import schema

REPORTS = f"{RUN_DIR}/artifacts/reports"
TASKS = [{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"]}, {"id": "c", "goal": "C"}]


def line(state: str, name: str, path: str, why: str = "") -> str:
    """One task line as the issue describes it: state, doit name, why (for stale/invalid), report path."""
    return f"{state:<8} {name:<30} {why + '  ' if why else ''}{path}"


@pytest.fixture
def done(repo: Repo) -> Repo:
    repo.write_codex(TASKS)
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    return repo


def test_status_before_any_run(repo: Repo) -> None:
    repo.write_codex(TASKS)
    result = repo.rlm("status")
    assert (result.code, result.err) == (0, "")
    assert result.lines == [
        "run t: 3 tasks: 0 fresh, 0 stale, 3 missing, 0 invalid",
        line("missing", "map:a", f"{REPORTS}/a.md"),
        line("missing", "map:b", f"{REPORTS}/b.md"),
        line("missing", "map:c", f"{REPORTS}/c.md"),
        "next wave: 2 tasks in start order (map:a, map:c); `rlm run --wave` runs only these",  # b waits for a
    ]


def test_status_lines_summary_first_then_one_line_per_task(done: Repo) -> None:
    data = (done.root / "rlm.yaml").read_text().replace("goal: A\n", "goal: A, edited\n")
    done.write(data)
    done.report("b").write_text("# b\n\nNo sections.\n")
    done.report("c").unlink()
    result = done.rlm("status")
    assert (result.code, result.err) == (0, "")
    assert result.lines == [
        "run t: 3 tasks: 0 fresh, 1 stale, 1 missing, 1 invalid",
        "usage: 3300 tokens (input 3000, cached 600, output 300), $0.0012",  # the fake codex's 3 turns
        f"stale    map:a{' ' * 26}prompt_changed  {REPORTS}/a.md",
        f"invalid  map:b{' ' * 26}report lacks required section 'Contract Compliance'  {REPORTS}/b.md",
        f"missing  map:c{' ' * 26}{REPORTS}/c.md",
        "next wave: 2 tasks in start order (map:a, map:c); `rlm run --wave` runs only these",
    ]


def test_status_json_is_schema_valid(done: Repo) -> None:
    done.report("c").unlink()
    result = done.rlm("status", "--json")
    assert (result.code, result.err) == (0, "")
    data = json.loads(result.out)
    assert schema.check("status", data) == []
    assert data["run_id"] == "t"
    assert data["counts"] == {"fresh": 2, "stale": 0, "missing": 1, "invalid": 0, "failed": 0, "running": 0,
                              "interrupted": 0, "partial": 0, "conflict": 0}
    assert data["total"] == 3
    assert [(t["id"], t["doit_name"], t["state"], t["reasons"], t["report_path"]) for t in data["tasks"]] == [
        ("a", "map:a", "fresh", [], f"{REPORTS}/a.md"),
        ("b", "map:b", "fresh", [], f"{REPORTS}/b.md"),
        ("c", "map:c", "missing", [], f"{REPORTS}/c.md"),
    ]


@pytest.mark.slow
def test_status_after_a_failed_run_says_which_failed_and_where_the_logs_are(repo: Repo) -> None:
    repo.write_codex(TASKS, mode="c=no-report")
    assert repo.doit().code == 1
    result = repo.rlm("status")
    assert result.lines[:3] == ["run t: 3 tasks: 2 fresh, 0 stale, 0 missing, 0 invalid, 1 failed",
                                "usage: 3300 tokens (input 3000, cached 600, output 300), $0.0012",
                                f"1 failed (c); logs: {LOCAL_RUN}/logs/"]


def test_check_exits_0_when_everything_is_fresh(done: Repo) -> None:
    result = done.rlm("check")
    assert (result.code, result.out, result.err) == (0, "run t: 3 tasks: 3 fresh, 0 stale, 0 missing, 0 invalid\n", "")


@pytest.mark.slow
def test_check_exits_1_and_lists_what_is_not_fresh(done: Repo) -> None:
    done.report("c").unlink()
    report = done.report("a")
    report.write_text(report.read_text() + "edited\n")
    result = done.rlm("check")
    assert (result.code, result.err) == (1, "")
    assert result.lines == [
        "run t: 3 tasks: 0 fresh, 2 stale, 1 missing, 0 invalid",
        line("stale", "map:a", f"{REPORTS}/a.md", "report_changed"),
        line("stale", "map:b", f"{REPORTS}/b.md",
             f"input_changed,upstream_stale (changed: {REPORTS}/a.md; upstream: map:a)"),
        line("missing", "map:c", f"{REPORTS}/c.md"),
    ]


@pytest.mark.slow
def test_check_exits_2_when_the_config_is_invalid(done: Repo) -> None:
    done.write((done.root / "rlm.yaml").read_text() + "bogus: 1\n")
    result = done.rlm("check")
    assert (result.code, result.out) == (2, "")
    lines = (done.root / "rlm.yaml").read_text().splitlines()
    assert result.err == f"rlm.yaml:{len(lines)}:1: bogus: unknown key 'bogus'\n"
    status = done.rlm("status")
    assert (status.code, status.err) == (2, result.err)


@pytest.mark.slow
def test_check_needs_no_doit_database(done: Repo) -> None:
    (done.root / ".rlm" / "local" / "doit.sqlite3").unlink()
    shutil.rmtree(done.root / ".rlm" / "local" / "cache", ignore_errors=True)
    result = done.rlm("check")
    assert result.code == 0, result.out
    assert not (done.root / ".rlm" / "local" / "doit.sqlite3").exists()


@pytest.mark.slow
def test_check_through_the_real_cli(done: Repo) -> None:
    assert done.rlm_cli("check").code == 0
    done.report("b").unlink()
    result = done.rlm_cli("check")
    assert (result.code, result.out.splitlines()[1]) == (1, line("missing", "map:b", f"{REPORTS}/b.md"))
    done.write("version: 1\n")
    result = done.rlm_cli("check")
    assert (result.code, result.out) == (2, "")
    assert [line.split(";")[0] for line in result.err.splitlines()] == [
        "rlm.yaml:1:1: (root): missing required key 'run_id'", "rlm.yaml:1:1: (root): missing required key 'goal'"]
