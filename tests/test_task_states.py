"""Task states as `make -q` sees them: upstream_stale, running, interrupted, input_changed detail, one numbering.

End to end through `doit` (in-process or a real `python -m doit`) and `rlm status`/`rlm check`/`rlm reduce`,
with the fake agent as a command worker.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
import yaml
from conftest import LOCAL_RUN as LOCAL
from conftest import RUN_DIR as RUN
from conftest import Repo, wait_for

from rlm_tasks.config import schema

REPORTS = f"{RUN}/artifacts/reports"
FAIL = {"exit": 3, "report": "none"}
CHAIN = [{"id": "a", "goal": "A", "inputs": ["in1.txt", "in2.txt", "in3.txt", "in4.txt", "in5.txt"]},
         {"id": "b", "goal": "B", "depends_on": ["a"]}, {"id": "c", "goal": "C", "depends_on": ["b"]},
         {"id": "d", "goal": "D"}]


@pytest.fixture
def inputs(repo: Repo) -> Repo:
    for n in range(1, 6):
        repo.write(f"{n}\n", f"in{n}.txt")
    return repo


def status_json(repo: Repo) -> dict[str, Any]:
    result = repo.rlm_cli("status", "--json")
    assert result.code == 0, result.out + result.err
    data = json.loads(result.out)
    assert schema.check("status", data) == []
    return {t["id"]: t for t in data["tasks"]}


def edit(repo: Repo, change: Any) -> None:
    data = yaml.safe_load(repo.path("rlm.yaml").read_text())
    change(data)
    repo.write(data)


def started(repo: Repo) -> list[tuple[str, int]]:
    return [(r["worker_id"], r["attempt"]) for r in repo.records()]


@pytest.mark.slow
def test_an_edited_goal_makes_its_dependents_stale_upstream_in_status_json_and_check(inputs: Repo) -> None:
    repo = inputs
    repo.write_command(CHAIN)
    assert repo.doit().code == 0
    edit(repo, lambda d: d["tasks"][0].update(goal="A, edited"))
    tasks = status_json(repo)
    assert [(t["state"], t["reasons"], t["upstream"]) for t in tasks.values()] == [
        ("stale", ["prompt_changed"], []),
        ("stale", ["upstream_stale"], ["map:a"]),
        ("stale", ["upstream_stale"], ["map:b"]),
        ("fresh", [], []),
    ]
    check = repo.rlm("check")
    assert check.code == 1
    assert check.lines == [
        "run t: 4 tasks: 1 fresh, 3 stale, 0 missing, 0 invalid",
        f"stale    map:a{' ' * 26}prompt_changed  {REPORTS}/a.md",
        f"stale    map:b{' ' * 26}upstream_stale (upstream: map:a)  {REPORTS}/b.md",
        f"stale    map:c{' ' * 26}upstream_stale (upstream: map:b)  {REPORTS}/c.md",
    ]
    # doit runs the chain down from a; b wrote the same report again, so c has nothing new to read
    assert repo.doit().code == 0
    assert started(repo) == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1), ("d", 1)]
    assert repo.rlm("check").code == 0


@pytest.mark.slow
def test_input_changed_names_the_first_paths_and_how_many_more(inputs: Repo) -> None:
    repo = inputs
    repo.write_command(CHAIN)
    assert repo.doit().code == 0
    for n in (1, 2, 4, 5):
        repo.write("edited\n", f"in{n}.txt")
    task = status_json(repo)["a"]
    assert (task["state"], task["reasons"], task["detail"]) == (
        "stale", ["input_changed"], "changed: in1.txt, in2.txt, in4.txt and 1 more")
    assert (f"stale    map:a{' ' * 26}input_changed (changed: in1.txt, in2.txt, in4.txt and 1 more)  "
            f"{REPORTS}/a.md") in repo.rlm("status").lines


@pytest.mark.slow
def test_a_running_task_shows_running_and_an_interrupted_run_marks_it_interrupted(repo: Repo) -> None:
    repo.write_command([{"id": "quick", "goal": "Q"}, {"id": "slow", "goal": "S"},
                        {"id": "after", "goal": "A", "depends_on": ["slow"]}],
                       {"slow": {"hang": True, "child": True}})
    run = repo.start_doit()
    wait_for(lambda: len(repo.records()) == 2 and status_json(repo)["quick"]["state"] == "fresh",
             "quick done and slow running")
    tasks = status_json(repo)
    slow = tasks["slow"]
    assert (slow["state"], slow["reasons"]) == ("running", [])
    assert slow["detail"].startswith("attempt 1, standard, ") and slow["detail"].endswith("s elapsed")
    assert (tasks["after"]["state"], tasks["after"]["upstream"]) == ("missing", ["map:slow"])
    assert repo.rlm_cli("status").out.splitlines()[0] == (
        "run t: 3 tasks: 1 fresh, 0 stale, 1 missing, 0 invalid, 1 running")
    run.proc.send_signal(signal.SIGINT)
    code, out = run.finish()
    assert code == 130, out
    tasks = status_json(repo)
    assert (tasks["slow"]["state"], tasks["slow"]["detail"]) == (
        "interrupted", f"attempt 1; log: {LOCAL}/logs/slow.attempt-1.log")
    assert tasks["quick"]["state"] == "fresh"
    state = json.loads(repo.path(f"{RUN}/reduce_state.json").read_text())
    assert schema.check("reduce_state", state) == []
    # `after` waited for slow: never started, interrupted all the same
    assert (tasks["after"]["state"], tasks["after"]["detail"], tasks["after"]["upstream"]) == (
        "interrupted", "not started: the run was interrupted by SIGINT", ["map:slow"])
    assert {r["id"]: r["state"] for r in state["tasks"]} == {"quick": "fresh", "slow": "interrupted",
                                                             "after": "interrupted"}
    assert state["counts"]["failed"] == 0 and state["counts"]["interrupted"] == 2
    attempts = json.loads(repo.path(f"{RUN}/artifacts/attempts/slow.json").read_text())
    assert schema.check("attempts", attempts) == []
    assert [(a["attempt"], a["outcome"]) for a in attempts["attempts"]] == [(1, "interrupted")]


@pytest.mark.slow
def test_tasks_still_queued_when_the_signal_came_are_interrupted_until_they_run(repo: Repo) -> None:
    repo.write_command([{"id": "slow", "goal": "S"}, {"id": "q1", "goal": "Q"}, {"id": "q2", "goal": "Q"}],
                       {"slow": {"hang": True}}, budget={"max_inflight": 1})
    run = repo.start_doit("map:slow", "map:q1", "map:q2")
    wait_for(lambda: len(repo.records()) == 1, "slow running")
    run.proc.send_signal(signal.SIGTERM)
    code, out = run.finish()
    assert code == 143, out
    tasks = status_json(repo)
    for queued in ("q1", "q2"):
        assert (tasks[queued]["state"], tasks[queued]["detail"], tasks[queued]["attempts"]) == (
            "interrupted", "not started: the run was interrupted by SIGTERM", 0)
        marked = json.loads(repo.path(f"{RUN}/artifacts/attempts/{queued}.json").read_text())
        assert schema.check("attempts", marked) == [] and marked["attempts"] == []
    assert tasks["slow"]["state"] == "interrupted"
    check = repo.rlm("check")
    assert check.code == 1
    assert check.lines[0] == "run t: 3 tasks: 0 fresh, 0 stale, 0 missing, 0 invalid, 3 interrupted"
    assert (f"interrupted map:q1{' ' * 25}not started: the run was interrupted by SIGTERM  {REPORTS}/q1.md"
            in check.lines)
    # the next run runs them; then they are fresh and the mark is gone
    repo.agent_spec({})
    assert repo.doit().code == 0
    assert {t["state"] for t in status_json(repo).values()} == {"fresh"}
    assert "not_started" not in json.loads(repo.path(f"{RUN}/artifacts/attempts/q1.json").read_text())


@pytest.mark.slow
def test_one_attempt_numbering_in_progress_lines_status_provenance_and_log_names(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A", "retries": 1}], {"a": {"attempts": {"1": FAIL, "3": FAIL}}})
    assert repo.doit().code == 0  # attempt 1 fails, attempt 2 makes the report
    edit(repo, lambda d: d["tasks"][0].update(goal="A, edited"))
    result = repo.doit_cli()
    out = result.out
    assert result.code == 0, out  # attempt 3 fails, attempt 4 makes the report
    assert "  start   map:a  attempt 3, standard\n" in out and "  start   map:a  attempt 4, standard\n" in out
    assert "  ok      map:a  " in out and "attempt 4, standard\n" in out
    logs = sorted(p.name for p in repo.path(f"{LOCAL}/logs").glob("*.log"))
    assert logs == [f"a.attempt-{n}.log" for n in (1, 2, 3, 4)]
    entry = repo.tasks_done()["a"]
    assert (entry["attempt"], [a["attempt"] for a in entry["attempts"]]) == (4, [3, 4])
    assert entry["log_path"] == f"{LOCAL}/logs/a.attempt-4.log"
    task = status_json(repo)["a"]
    assert (task["attempt"], task["attempts"]) == (4, 4)
    assert repo.rlm("status").lines[1] == f"fresh    map:a{' ' * 26}{REPORTS}/a.md  (attempt 4, standard)"


@pytest.mark.slow
def test_a_worker_that_just_started_is_never_stalled_a_silent_one_is(repo: Repo) -> None:
    repo.write_command([{"id": "busy", "goal": "B"}, {"id": "silent", "goal": "S"}],
                       {"busy": {"sleep": 60, "progress": 0.2}, "silent": {"hang": True}})
    run = repo.start_doit()
    wait_for(lambda: len(repo.records()) == 2 and len(repo.inflight_entries()) == 2, "both workers to start")
    first = repo.rlm_cli("reduce", "--stale-seconds", "30")
    assert first.code == 0, first.out + first.err
    state = json.loads(repo.path(f"{RUN}/reduce_state.json").read_text())
    assert schema.check("reduce_state", state) == []
    local = json.loads(repo.path(f"{LOCAL}/reduce_state.local.json").read_text())
    assert state["counts"]["running"] == 2 and local["stalled"] == [] and local["running"] == ["busy", "silent"]

    def stalled() -> list[str]:
        assert repo.rlm_cli("reduce", "--stale-seconds", "1").code == 0
        return list(json.loads(repo.path(f"{LOCAL}/reduce_state.local.json").read_text())["stalled"])

    wait_for(lambda: stalled() == ["silent"], "the silent worker to count as stalled", timeout=20)
    quiet = json.loads(repo.path(f"{LOCAL}/reduce_state.local.json").read_text())["quiet_seconds"]
    assert quiet["busy"] < 1 <= quiet["silent"]
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish()[0] == 143
