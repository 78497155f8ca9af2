"""A task whose last attempt failed is `failed` everywhere the orchestrator looks, with how (the outcome), why and
which attempt; a retry's worker is told what the attempt before it did wrong."""

from __future__ import annotations

import json

from conftest import LOCAL_RUN, RUN_DIR, Repo

REPORTS = f"{RUN_DIR}/artifacts/reports"
LOGS = f"{LOCAL_RUN}/logs"
TASKS = [{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}, {"id": "c", "goal": "C"}, {"id": "d", "goal": "D"}]
SPEC = {"b": {"report": "none"}, "c": {"exit": 3}, "d": {"report": "no-section"}}
CAUSES = {
    "b": ("no_report", "no report written"),
    "c": ("exit", "agent exited with code 3"),
    "d": ("invalid_report", "report lacks required section 'Contract Compliance'"),
}


def _failed(repo: Repo) -> Repo:
    repo.write_command(TASKS, SPEC)
    result = repo.doit()
    assert result.code == 1, result.out
    for task_id, (outcome, detail) in CAUSES.items():
        rejected = f" (report moved to {REPORTS}/{task_id}.attempt-1.rejected.md)" if task_id in "cd" else ""
        log = f"{LOGS}/{task_id}.attempt-1.log"
        assert f"  FAILED  map:{task_id}: attempt 1, {outcome}: {detail}{rejected}; log: {log}\n" in result.out
    return repo


def test_a_failed_task_says_how_why_and_which_attempt_in_status(repo: Repo) -> None:
    _failed(repo)
    result = repo.rlm("status")
    assert result.lines[0] == "run t: 4 tasks: 1 fresh, 0 stale, 0 missing, 0 invalid, 3 failed"
    assert f"3 failed (b, c, d); logs: {LOGS}/" in result.lines
    for task_id, (outcome, detail) in CAUSES.items():
        rejected = f"; rejected report: {REPORTS}/{task_id}.attempt-1.rejected.md" if task_id in "cd" else ""
        line = (f"failed   map:{task_id:<26} attempt 1, {outcome}: {detail}; log: {LOGS}/{task_id}.attempt-1.log"
                f"{rejected}  {REPORTS}/{task_id}.md")
        assert line in result.lines, result.out


def test_a_failed_task_is_failed_in_status_json_and_reduce_state(repo: Repo) -> None:
    _failed(repo)
    data = json.loads(repo.rlm("status", "--json").out)
    inventory = json.loads((repo.root / RUN_DIR / "reduce_state.json").read_text())
    for rows in (data["tasks"], inventory["tasks"]):
        by_id = {row["id"]: row for row in rows}
        assert by_id["a"]["state"] == "fresh" and "failure" not in by_id["a"]
        for task_id, (outcome, detail) in CAUSES.items():
            assert by_id[task_id]["state"] == "failed"
            failure = by_id[task_id]["failure"]
            assert (failure["attempt"], failure["outcome"], failure["detail"], failure["log_path"]) == (
                1, outcome, detail, f"{LOGS}/{task_id}.attempt-1.log")
    assert data["failed"] == ["b", "c", "d"]
    assert data["counts"]["failed"] == inventory["counts"]["failed"] == 3
    assert data["counts"]["missing"] == inventory["counts"]["missing"] == 0


def test_a_rerun_that_succeeds_is_no_longer_failed(repo: Repo) -> None:
    _failed(repo)
    repo.agent_spec({})
    assert repo.doit().code == 0
    assert repo.rlm("status").lines[0] == "run t: 4 tasks: 4 fresh, 0 stale, 0 missing, 0 invalid"


def test_a_retry_is_told_what_the_attempt_before_it_did_wrong(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A", "retries": 2}],
                       {"a": {"attempts": {"1": {"report": "no-section"}, "2": {"exit": 3, "report": "none"}}}})
    result = repo.doit()
    assert result.code == 0, result.out
    first, second, third = (repo.stdin_of(call).decode() for call in repo.records("a"))
    assert "previous attempt" not in first
    assert second.startswith(first)
    assert second[len(first):] == (
        "\n\n## Your previous attempt failed\n"
        "Attempt 1 of this task ended with `invalid_report`: report lacks required section 'Contract Compliance'.\n"
        f"Its rejected report is kept at `{REPORTS}/a.attempt-1.rejected.md`: read it, keep what holds, "
        "fix what was wrong.\n"
        "Give the report every heading the prompt requires, spelled as written.\n")
    assert third[len(first):] == (
        "\n\n## Your previous attempt failed\n"
        "Attempt 2 of this task ended with `exit`: agent exited with code 3.\n"
        "Find out why your process exited with an error, and end with exit code 0 after writing the report.\n")
    # the note is not what the task asks: the prompt on record and its digest stay those of the plain prompt
    assert (repo.root / RUN_DIR / "artifacts/prompts/a.md").read_text() == first
    assert repo.doit().code == 0
    assert len(repo.records("a")) == 3


def test_the_next_run_of_a_failed_task_is_told_too(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}], {"a": {"report": "none"}})
    assert repo.doit().code == 1
    repo.agent_spec({})
    assert repo.doit().code == 0
    first, second = (repo.stdin_of(call).decode() for call in repo.records("a"))
    assert second[len(first):].startswith(
        "\n\n## Your previous attempt failed\nAttempt 1 of this task ended with `no_report`: no report written.\n")


def test_wait_and_watch_count_this_runs_failures_only(repo: Repo) -> None:
    repo.write_command(TASKS[:2], {"b": {"report": "none"}})
    assert repo.doit().code == 1
    repo.write_command([*TASKS[:2], {"id": "c", "goal": "C"}], {"b": {"report": "none"}})
    assert repo.doit("map:c").code == 0  # b's failure is the run before's
    waited = repo.rlm("wait")
    assert (waited.code, waited.out) == (
        1, f"rlm: run t finished: 2/3 fresh, 1 not fresh (rlm status); inventory: {RUN_DIR}/reduce_state.json; "
           "rlm wait exits 1\n")
    watched = repo.rlm("status", "--watch")
    assert watched.out == "rlm: run t: 2/3 done, 0 running, 0 failed (not running)\n"
    assert repo.rlm("status").lines[0] == "run t: 3 tasks: 2 fresh, 0 stale, 0 missing, 0 invalid, 1 failed"
    assert repo.doit().code == 1  # b fails again: now it is this run's
    waited = repo.rlm("wait")
    assert waited.out.startswith("rlm: run t finished: 2/3 fresh, 1 failed: map:b; ")
    assert waited.out.endswith("; rlm wait exits 1\n")
    assert repo.rlm("status", "--watch").out == "rlm: run t: 2/3 done, 0 running, 1 failed (not running)\n"
