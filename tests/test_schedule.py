"""The order tasks start in: longest remaining chain first, from the durations of earlier attempts."""

from __future__ import annotations

import json
import random

import pytest
from conftest import Repo

from rlm_tasks.config.records import TaskSpec
from rlm_tasks.run import schedule as run_schedule
from rlm_tasks.state import schedule


def spec(task_id: str, depends_on: tuple[str, ...] = (), tier: str = "medium") -> TaskSpec:
    return TaskSpec(id=task_id, goal=task_id, mode="map", granularity="file", compute_tier=tier,
                    depends_on=depends_on, inputs=(), context_paths=(), watch=(), report_path=f"r/{task_id}.md",
                    required_sections=(), agent=None)  # type: ignore[arg-type]


def ids(tasks: list[TaskSpec]) -> list[str]:
    return [task.id for task in tasks]


def test_a_long_task_declared_last_and_a_chain_start_before_short_tasks() -> None:
    tasks = [spec("s1"), spec("s2"), spec("c1"), spec("c2", ("c1",)), spec("c3", ("c2",)), spec("long")]
    durations = {"s1": 1, "s2": 1, "c1": 2, "c2": 2, "c3": 2, "long": 5}
    found = schedule.plan_schedule(tasks, durations)
    assert found.rank == {"s1": 1, "s2": 1, "c1": 6, "c2": 4, "c3": 2, "long": 5}
    assert ids(found.order(tasks)) == ["c1", "long", "c2", "c3", "s1", "s2"]
    assert schedule.lower_bound(found, 2) == 6.5  # total work 13 over 2 slots beats the 6 s chain
    assert schedule.lower_bound(found, 8) == 6.0


def test_without_durations_the_structure_decides_and_ties_keep_declaration_order() -> None:
    tasks = [spec("a"), spec("b"), spec("x"), spec("y", ("x",)), spec("z", ("y",))]
    found = schedule.plan_schedule(tasks, {})
    assert ids(found.order(tasks)) == ["x", "y", "a", "b", "z"]
    assert found.known == frozenset()


def test_unknown_tasks_take_their_tiers_median_then_everyones() -> None:
    tasks = [spec("h1", tier="high"), spec("h2", tier="high"), spec("h3", tier="high"), spec("l1", tier="low"),
             spec("m1")]
    found = schedule.plan_schedule(tasks, {"h1": 10, "h2": 30, "l1": 1})
    assert found.expected == {"h1": 10, "h2": 30, "h3": 20, "l1": 1, "m1": 10}  # median of 1, 10, 30
    assert found.known == {"h1", "h2", "l1"}


@pytest.mark.parametrize("seed", range(20))
def test_the_order_respects_every_dependency(seed: int) -> None:
    rng = random.Random(seed)
    tasks: list[TaskSpec] = []
    for i in range(40):
        deps = tuple(sorted({f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))})) if i else ()
        tasks.append(spec(f"t{i}", deps))
    rng.shuffle(tasks)  # declaration order need not be topological
    durations = {task.id: rng.choice([0, 0.5, 1, 7]) for task in tasks if rng.random() < 0.7}
    order = ids(schedule.plan_schedule(tasks, durations).order(tasks))
    position = {task_id: n for n, task_id in enumerate(order)}
    assert sorted(order) == sorted(ids(tasks))
    for task in tasks:
        assert all(position[dep] < position[task.id] for dep in task.depends_on), (task.id, task.depends_on)


def test_recorded_attempts_give_the_durations() -> None:
    assert schedule.attempt_seconds({"duration": 2.5, "outcome": "ok"}) == 2.5
    assert schedule.attempt_seconds({"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:01:30Z"}) == 90
    assert schedule.attempt_seconds({"duration": 4, "outcome": "interrupted"}) is None
    assert schedule.attempt_seconds({"duration": float("nan")}) is None
    assert schedule.attempt_seconds({"started_at": "2026-01-01T00:01:00Z", "finished_at": "2026-01-01T00:00:00Z"}) \
        is None


def test_the_ready_queue_pops_by_rank_then_arrival() -> None:
    class Node:
        def __init__(self, name: str) -> None:
            self.task = type("T", (), {"name": name})()

    queue = run_schedule.RankedReady({"map:a": 1.0, "map:b": 5.0, "map:c": 1.0}, [Node("map:a")])
    for name in ("map:b", "map", "map:c"):
        queue.append(Node(name))
    popped = []
    while queue:
        popped.append(queue.popleft().task.name)
    assert popped == ["map", "map:b", "map:a", "map:c"]  # a group occupies no slot: first


DAG = [{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}, {"id": "c", "goal": "C"}, {"id": "x", "goal": "X"},
       {"id": "y", "goal": "Y", "depends_on": ["x"]}, {"id": "z", "goal": "Z"}]
TOOK = {"a": 1.0, "b": 1.0, "c": 1.0, "x": 4.0, "y": 4.0, "z": 10.0}  # what their earlier attempts took, in seconds


def started(repo: Repo, since: int) -> list[str]:
    return [call["worker_id"] for call in repo.calls()[since:]]


def rerun_all(repo: Repo, config: dict) -> int:
    config["goal"] = config["goal"] + " Again."  # the contract changes: every task is stale
    repo.write(config)
    before = len(repo.calls())
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    return before


def test_a_run_starts_tasks_by_what_their_earlier_attempts_took(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    config = repo.write_command(DAG, budget={"max_inflight": 1})
    assert repo.doit().code == 0
    # the durations the accepted attempts recorded, set here: measured ones would depend on the machine's load
    path = repo.run_dir / "provenance.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for worker_id, entry in data["tasks"].items():
        entry["attempts"][-1]["duration"] = TOOK[worker_id]
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert "next wave" not in repo.rlm("status").out
    config["goal"] += " Edited."
    repo.write(config)
    status = repo.rlm("status").out.splitlines()[-1]
    assert status.startswith("next wave: 1 task (map:z); ")  # a wave starts max_inflight tasks, in start order
    waves = json.loads(repo.rlm("status", "--json").out)
    assert [*waves["next_wave"], *waves["next_wave_waiting"]["more"]] == ["map:z", "map:x", "map:a", "map:b",
                                                                          "map:c"]  # y waits for x
    before = rerun_all(repo, config)
    assert started(repo, before) == ["z", "x", "y", "a", "b", "c"]  # y (4 s) before a, b and c (1 s each)
    monkeypatch.setenv(run_schedule.ORDER_ENV, "declared")
    before = rerun_all(repo, config)
    assert started(repo, before) == ["a", "b", "c", "x", "y", "z"]


def test_a_first_run_starts_the_longest_chain_first(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}, {"id": "p", "goal": "P"},
                        {"id": "q", "goal": "Q", "depends_on": ["p"]}, {"id": "r", "goal": "R", "depends_on": ["q"]}],
                       budget={"max_inflight": 1})
    assert repo.doit().code == 0
    assert started(repo, 0)[:2] == ["p", "q"]
