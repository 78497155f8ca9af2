"""The Dask executor on a distributed.LocalCluster with worker processes: attempts run there, the runner keeps
retries, timeouts, provenance and report validation, and where a task ran is not part of its digests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Repo

from rlm_tasks.run.executors import dask as dask_executor

pytestmark = pytest.mark.slow  # see CONTRIBUTING.md: the fast subset

distributed = pytest.importorskip("distributed")  # the `dask` extra; .ci/run installs it, so CI runs these


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0",  # None still binds 8787, maybe taken
                                  local_directory=str(tmp_path_factory.mktemp("dask"))) as c:
        yield c


def worker_pids(cluster: Any) -> set[int]:
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        return set(client.run(os.getpid).values())


def test_attempts_run_in_dask_worker_processes_and_provenance_does_not_say_where(repo: Repo, cluster: Any) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"]}],
                       executor={"kind": "dask", "scheduler": cluster.scheduler_address})
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    assert repo.ran() == ["a", "b"]
    assert {call["ppid"] for call in repo.calls()} <= worker_pids(cluster)
    assert sorted(repo.provenance()["tasks"]) == ["a", "b"]
    assert repo.inflight_entries() == []
    for call in repo.calls():
        assert repo.group_gone(call["pgid"])
    local = repo.rlm_cli("run", "--executor", "local")  # the same plan on this machine: nothing is stale
    assert local.code == 0, local.out + local.err
    assert "rlm: 0 ran, 0 failed, 2 fresh in " in local.out


def test_retries_and_timeouts_stay_with_the_runner(repo: Repo, cluster: Any) -> None:
    repo.write_command([{"id": "flaky", "goal": "F", "retries": 1}, {"id": "stuck", "goal": "S"}],
                       {"flaky": {"attempts": {"1": {"exit": 3, "report": "none"}}}, "stuck": {"hang": True,
                                                                                             "child": True}},
                       agent={"timeout": 2})
    repo.monkeypatch.setenv("RLM_EXECUTOR", cluster.scheduler_address)
    result = repo.doit()
    assert result.code == 1, result.out + result.err
    assert ("  FAILED  map:stuck: attempt 1, timeout: timed out after 2s; "
            "log: .rlm/local/runs/t/logs/stuck.attempt-1.log\n"
            in result.out)
    assert [(r["worker_id"], r["attempt"]) for r in repo.records()] == [("flaky", 1), ("flaky", 2), ("stuck", 1)]
    entry = repo.provenance()["tasks"]["flaky"]
    assert [a["outcome"] for a in entry["attempts"]] == ["exit", "ok"]
    assert {call["ppid"] for call in repo.calls()} <= worker_pids(cluster)
    stuck = repo.records("stuck")[0]
    assert repo.group_gone(stuck["pgid"]) and repo.group_gone(stuck["child"])


def test_a_worker_that_sees_another_repository_is_named() -> None:
    expected = {"host": "here", "commit": "c1", "config_sha256": "d1", "config": "/repo/rlm.yaml"}
    seen = {"tcp://10.0.0.2:4000": {"host": "n2", "commit": "c1", "config_sha256": "d1"},
            "tcp://10.0.0.3:4000": {"host": "n3", "commit": "c0", "config_sha256": "d1"},
            "tcp://10.0.0.4:4000": {"host": "n4", "commit": "c1", "config_sha256": "d2"},
            "tcp://10.0.0.5:4000": {"host": "n5", "commit": None, "config_sha256": None}}
    assert dask_executor.mismatches("/repo", expected, seen) == (
        "executor: every Dask worker must see this repository at /repo (a shared filesystem): "
        "tcp://10.0.0.3:4000 (n3) is at commit c0, not c1; tcp://10.0.0.4:4000 (n4) sees another rlm.yaml; "
        "tcp://10.0.0.5:4000 (n5) has no rlm.yaml")
    assert dask_executor.mismatches("/repo", expected, {"tcp://10.0.0.2:4000": seen["tcp://10.0.0.2:4000"]}) is None


def test_a_cluster_that_sees_another_commit_runs_nothing(repo: Repo, cluster: Any) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        seen = client.run(dask_executor.probe, str(repo.root), str(repo.root / "rlm.yaml"))
    assert {(found["commit"], found["config_sha256"]) for found in seen.values()} == {
        (None, dask_executor.probe(str(repo.root), str(repo.root / "rlm.yaml"))["config_sha256"])}
    # this machine now sees a commit the workers do not (the workers' probe runs in their own processes)
    repo.monkeypatch.setattr(dask_executor, "git_commit", lambda root: "c-local")
    repo.monkeypatch.setenv("RLM_EXECUTOR", cluster.scheduler_address)
    result = repo.doit()
    assert result.code == 1
    assert repo.calls() == []
    workers = "; ".join(f"{address} ({found['host']}) is at commit none, not c-local"
                        for address, found in sorted(seen.items()))
    assert (f"  FAILED  map:a: executor: every Dask worker must see this repository at {repo.root} "
            f"(a shared filesystem): {workers}\n") in result.out


def test_an_executor_that_names_nothing_usable_stops_the_run_before_it_starts(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    repo.monkeypatch.setenv("RLM_EXECUTOR", "ftp://host")
    result = repo.doit()
    assert (result.code, result.err) == (2, "RLM_EXECUTOR: expected local, dask or a Dask scheduler address such as "
                                            "tcp://HOST:8786, got 'ftp://host'\n")
    repo.monkeypatch.setenv("RLM_EXECUTOR", "dask")
    result = repo.doit()
    assert (result.code, result.err) == (2, f"{repo.root / 'rlm.yaml'}: executor: kind dask needs a scheduler "
                                            "address: executor.scheduler in rlm.yaml, RLM_EXECUTOR=tcp://HOST:8786 "
                                            "or rlm run --executor tcp://HOST:8786\n")
    assert repo.calls() == []
