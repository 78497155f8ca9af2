"""`rlm run --wave`: only the tasks ready now, never one whose dependency ran in the same invocation."""

from __future__ import annotations

import json

import pytest
from conftest import Repo

from rlm_tasks.config import schema

TASKS = [{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}, {"id": "join", "goal": "J", "depends_on": ["a", "b"]},
         {"id": "after", "goal": "F", "depends_on": ["join"]}]


@pytest.fixture
def waves(repo: Repo) -> Repo:
    repo.write_command(TASKS)
    return repo


@pytest.mark.slow
def test_each_wave_runs_the_ready_tasks_and_status_shows_the_next(waves: Repo) -> None:
    repo = waves
    assert repo.rlm("status").lines[-1] == \
        "next wave: 2 tasks in start order (map:a, map:b); `rlm run --wave` runs only these"
    result = repo.rlm_cli("run", "--wave")
    assert result.code == 0, result.out + result.err
    assert repo.ran() == ["a", "b"]
    assert result.out.splitlines()[-1].startswith(
        "rlm: 2 ran, 0 failed, 0 fresh, 2 wait for the next wave (rlm status) in ")
    status = json.loads(repo.rlm("status", "--json").out)
    assert schema.check("status", status) == [] and status["next_wave"] == ["map:join"]
    assert repo.rlm_cli("run", "--wave").code == 0
    assert repo.ran() == ["a", "b", "join"]
    assert repo.rlm_cli("run", "--wave").code == 0
    assert repo.ran() == ["a", "after", "b", "join"]
    assert "next wave" not in repo.rlm("status").out and repo.rlm("check").code == 0


@pytest.mark.slow
def test_a_changed_task_and_its_dependents_take_one_wave_each(waves: Repo) -> None:
    repo = waves
    assert repo.rlm_cli("run").code == 0
    repo.write(repo.path("rlm.yaml").read_text().replace("goal: A\n", "goal: A, again\n"))
    result = repo.rlm_cli("run", "--wave")
    assert result.code == 0, result.out + result.err
    assert [(r["worker_id"], r["attempt"]) for r in repo.records() if r["attempt"] > 1] == [("a", 2)]
    # join reads a's new report only in the next wave
    assert json.loads(repo.rlm("status", "--json").out)["next_wave"] == ["map:join"]


def test_a_wave_starts_at_most_max_inflight_and_does_not_refill(repo: Repo) -> None:
    repo.write_command([{"id": f"t{i}", "goal": f"T{i}"} for i in range(5)], budget={"max_inflight": 2})
    assert repo.rlm("status").lines[-1] == ("next wave: 2 tasks in start order (map:t0, map:t1); `rlm run --wave` "
                                            "runs only these; 3 more ready (a later wave, or `--allow-refill`)")
    result = repo.rlm_cli("run", "--wave")
    assert result.code == 0, result.out + result.err
    assert repo.ran() == ["t0", "t1"]
    assert " 2 ran, 0 failed, 0 fresh, 3 wait for the next wave (rlm status) in " in result.lines[-1]
    status = json.loads(repo.rlm("status", "--json").out)
    assert schema.check("status", status) == []
    assert (status["next_wave"], status["next_wave_waiting"]) == (["map:t2", "map:t3"],
                                                                  {"more": ["map:t4"], "join": []})
    assert repo.rlm_cli("run", "--wave", "-n", "1").code == 0  # -n is the cap of this wave
    assert repo.ran() == ["t0", "t1", "t2"]
    assert repo.rlm_cli("run", "--wave", "--allow-refill").code == 0  # every ready task, slots refilled
    assert repo.ran() == ["t0", "t1", "t2", "t3", "t4"]


def test_join_tasks_wait_for_allow_join(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"},
                        {"id": "join-all", "goal": "J", "depends_on": ["a", "b"]},
                        {"id": "merge", "goal": "M", "depends_on": ["a"], "join": True},
                        {"id": "free", "goal": "F", "depends_on": ["a"]}])
    assert repo.rlm_cli("run", "--wave").code == 0
    assert repo.ran() == ["a", "b"]
    assert repo.rlm("status").lines[-1] == ("next wave: 1 task (map:free); `rlm run --wave` runs only these; "
                                            "2 join tasks (map:join-all, map:merge) wait for `--allow-join`")
    result = repo.rlm_cli("run", "--wave")
    assert result.code == 0, result.out + result.err
    assert repo.ran() == ["a", "b", "free"]
    assert result.lines[-1].startswith("rlm: 1 ran, 0 failed, 2 fresh, 2 wait for the next wave (rlm status), "
                                       "2 join tasks ready for `rlm run --wave --allow-join` in ")
    assert repo.rlm("status").lines[-1] == (
        "next wave: only join tasks are ready: 2 join tasks (map:join-all, map:merge); review the reports they "
        "read, then `rlm run --wave --allow-join`")
    assert repo.rlm_cli("run", "--wave").code == 0
    assert repo.ran() == ["a", "b", "free"]  # still none
    assert repo.rlm_cli("run", "--wave", "--allow-join").code == 0
    assert repo.ran() == ["a", "b", "free", "join-all", "merge"]


def test_plain_doit_and_run_still_run_every_stale_task_joins_included(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "join-x", "goal": "J", "depends_on": ["a"]}],
                       budget={"max_inflight": 1})
    assert repo.doit().code == 0
    assert repo.ran() == ["a", "join-x"]
    refused = repo.rlm("run", "--allow-join")
    assert (refused.code, refused.err) == (2, "rlm run: --allow-join and --allow-refill go with --wave (a plain "
                                         "run runs every stale task, joins included)\n")


@pytest.mark.parametrize("adopt", [False, True])
def test_after_a_killed_orchestrator_the_wave_ends_or_adopts_what_it_left_then_runs(repo: Repo, adopt: bool) -> None:
    go = repo.root / "go"
    repo.write_command([{"id": "slow", "goal": "S"}, {"id": "other", "goal": "O"},
                        {"id": "next", "goal": "N", "depends_on": ["slow"]}],
                       {"slow": {"wait_for": str(go)}}, budget={"max_inflight": 1})
    run = repo.start_doit(RLM_KEEP_WORKERS="1")  # the worker outlives the SIGKILL (the default ends it)
    try:
        repo.wait_for(lambda: len(repo.inflight_entries()) == 1 and len(repo.records()) == 1, "slow running")
    finally:
        run.proc.kill()  # SIGKILL: the worker is left running
        run.finish()
    assert [e["worker_id"] for e in repo.inflight_entries()] == ["slow"]
    assert repo.rlm("status").lines[-1] == (  # slow's orchestrator is dead: the next wave ends or adopts it first
        "next wave: 1 task (map:slow); `rlm run --wave` runs only these; 1 more ready (a later wave, or "
        "`--allow-refill`)")
    if adopt:
        go.touch()  # the orphan finishes while the next orchestrator waits for it
        result = repo.rlm_cli("run", "--wave", "--adopt")
    else:
        repo.agent_spec({})
        result = repo.rlm_cli("run", "--wave")
    assert result.code == 0, result.out + result.err
    expected = [("slow", 1)] if adopt else [("slow", 1), ("slow", 2)]
    assert [(r["worker_id"], r["attempt"]) for r in repo.records()] == expected  # it was this wave's one slot
    assert json.loads(repo.rlm("status", "--json").out)["tasks"][0]["state"] == "fresh"
    assert " 1 ran, 0 failed, 0 fresh, 2 wait for the next wave (rlm status) in " in result.lines[-1]
