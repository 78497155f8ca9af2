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
