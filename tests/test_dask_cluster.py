"""End to end through a real Dask cluster: `dask scheduler` and two `dask worker` processes on 127.0.0.1, the
real `rlm run --executor` / `doit` CLI. Retries, a timeout, SIGTERM and a SIGKILLed orchestrator; attempts run in
the Dask worker processes, and nothing is left running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Repo, process_reaped, subprocess_env, wait_for

pytestmark = pytest.mark.slow  # see CONTRIBUTING.md: the fast subset

distributed = pytest.importorskip("distributed")  # the `dask` extra; .ci/run installs it, so CI runs these
DASK = str(Path(sys.executable).parent / "dask")


@dataclass
class Cluster:
    address: str
    worker_pids: set[int]
    procs: list[subprocess.Popen[bytes]]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("dask-cluster")
    scheduler_file = base / "scheduler.json"
    common = {"cwd": base, "env": subprocess_env(), "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
              "start_new_session": True}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(scheduler_file)], **common)]  # type: ignore[call-overload]
    try:
        wait_for(scheduler_file.exists, "the scheduler file", timeout=60)
        for n in range(2):
            procs.append(subprocess.Popen([DASK, "worker", "--scheduler-file", str(scheduler_file), "--host",
                                           "127.0.0.1", "--nthreads", "2", "--no-dashboard", "--resources",
                                           "agents=2", "--local-directory", str(base / f"w{n}")],
                                          **common))  # type: ignore[call-overload]
        with distributed.Client(scheduler_file=str(scheduler_file), set_as_default=False, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
            pids = set(client.run(os.getpid).values())
        yield Cluster(address, pids, procs)
    finally:
        _stop(procs)
    for proc in procs:
        assert proc.poll() is not None


def assert_all_gone(repo: Repo, calls: list[dict[str, Any]]) -> None:
    for call in calls:
        assert repo.group_gone(call["pgid"]), call["worker_id"]
        if call.get("child"):
            assert repo.group_gone(call["child"]) or not Path(f"/proc/{call['child']}").exists()


def test_retries_and_a_timeout_through_the_cluster(repo: Repo, cluster: Cluster) -> None:
    repo.write_command([{"id": "ok", "goal": "O"}, {"id": "flaky", "goal": "F", "retries": 1},
                        {"id": "stuck", "goal": "S"}],
                       {"flaky": {"attempts": {"1": {"exit": 3, "report": "none"}}},
                        "stuck": {"hang": True, "child": True}}, agent={"timeout": 3})
    result = repo.rlm_cli("run", "--executor", cluster.address, timeout=120)
    assert result.code == 1, result.out + result.err
    assert ("  FAILED  map:stuck: attempt 1, timeout: timed out after 3s; "
            "log: .rlm/local/runs/t/logs/stuck.attempt-1.log\n"
            in result.out)
    assert "rlm: 2 ran, 1 failed, 0 fresh in " in result.out
    assert [(r["worker_id"], r["attempt"]) for r in repo.records()] == [
        ("flaky", 1), ("flaky", 2), ("ok", 1), ("stuck", 1)]
    assert {call["ppid"] for call in repo.calls()} <= cluster.worker_pids  # ran in the Dask worker processes
    tasks = repo.provenance()["tasks"]
    assert sorted(tasks) == ["flaky", "ok"]
    assert [a["outcome"] for a in tasks["flaky"]["attempts"]] == ["exit", "ok"]
    assert repo.report("ok").exists() and repo.report("flaky").exists() and not repo.report("stuck").exists()
    assert repo.inflight_entries() == []
    assert_all_gone(repo, repo.calls())


def test_sigterm_ends_every_remote_attempt(repo: Repo, cluster: Cluster) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], {"*": {"hang": True, "child": True}})
    run = repo.start_doit(RLM_EXECUTOR=cluster.address)
    wait_for(lambda: len(repo.calls()) == 2 and len(repo.inflight_entries()) == 2, "two remote attempts", 60)
    assert {e["executor"] for e in repo.inflight_entries()} == {"dask"}
    os.kill(run.pid, signal.SIGTERM)
    code, out = run.finish()
    assert code == 143, out
    assert "rlm: interrupted by SIGTERM; " in out
    assert {call["ppid"] for call in repo.calls()} <= cluster.worker_pids
    assert_all_gone(repo, repo.calls())
    assert repo.inflight_entries() == []


def test_a_killed_orchestrators_remote_attempts_are_ended_by_the_next_run(repo: Repo, cluster: Cluster) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], {"*": {"hang": True}})
    run = repo.start_doit(RLM_EXECUTOR=cluster.address)
    wait_for(lambda: len(repo.calls()) == 2 and len(repo.inflight_entries()) == 2, "two remote attempts", 60)
    run.proc.kill()  # SIGKILL: the remote attempts go on without it
    run.finish()
    orphans = repo.calls()
    for call in orphans:
        os.killpg(call["pgid"], 0)  # still running on the cluster
    repo.agent_spec({})
    again = repo.rlm_cli("run", "--executor", cluster.address, timeout=120)
    assert again.code == 0, again.out + again.err
    assert f"rlm: ended 2 worker group(s) a dead orchestrator (pid {run.pid}) left running: map:a, map:b\n" in again.out
    assert_all_gone(repo, orphans)
    assert [(r["worker_id"], r["attempt"]) for r in repo.records()] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert {k: v["attempt"] for k, v in repo.provenance()["tasks"].items()} == {"a": 2, "b": 2}


def test_a_grandchild_that_escaped_group_and_tag_is_ended_by_the_dask_worker(repo: Repo, cluster: Cluster) -> None:
    """The Dask worker process runs the attempt, so it is the child subreaper there (Linux), and reaps it too."""
    pid_file = repo.root / "escapee.pid"
    repo.write_command([{"id": "a", "goal": "A"}], {"a": {"escape": str(pid_file)}})
    result = repo.rlm_cli("run", "--executor", cluster.address, timeout=120)
    assert result.code == 0, result.out + result.err
    assert {call["ppid"] for call in repo.calls()} <= cluster.worker_pids
    pid = int(pid_file.read_text())
    assert process_reaped(pid), f"grandchild {pid} survived its remote attempt, or was left a zombie"


def test_isolated_attempts_without_a_shared_filesystem(repo: Repo, cluster: Cluster) -> None:
    """executor.filesystem none: each attempt's tree travels as a git bundle to a Dask worker, runs in a worktree
    under that worker's own folder, and its report and change come back; the runner gates and merges them."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo.root, check=True)
    repo.write("/.rlm/local/\n/agent-log.jsonl\n/agent-spec.json\n", ".gitignore")
    repo.write("one\n", "a.txt")
    repo.write("x = 1\n", "src/b.py")
    subprocess.run([*git, "add", "-A"], cwd=repo.root, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo.root, check=True)
    repo.write("one\nuncommitted\n", "a.txt")  # the snapshot, not HEAD, is what travels
    repo.write_command(
        [{"id": "a", "goal": "A", "isolation": "worktree", "owns": ["a.txt"]},
         {"id": "b", "goal": "B", "isolation": "worktree", "owns": ["src/**"]},
         {"id": "v", "goal": "V", "isolation": "worktree", "owns": ["a.txt"], "depends_on": ["a"],
          "gate": ["grep -q '^A$' a.txt"]}],
        {"a": {"append": {"a.txt": "A\n"}}, "b": {"append": {"src/b.py": "y = 2\n"}}},
        executor={"kind": "dask", "scheduler": cluster.address, "filesystem": "none"})
    result = repo.rlm_cli("run", timeout=180)
    assert result.code == 0, result.out + result.err
    assert repo.path("a.txt").read_text() == "one\nuncommitted\nA\n"
    assert repo.path("src/b.py").read_text() == "x = 1\ny = 2\n"
    calls = repo.calls()  # the fake agent's own record (a test harness file, not the run's)
    assert sorted(c["worker_id"] for c in calls) == ["a", "b", "v"]
    root = str(repo.root.resolve())
    for call in calls:
        assert not call["cwd"].startswith(root) and "/rlm/t/worktrees/" in call["cwd"]
        assert not call["env"]["RLM_REPORT_PATH"].startswith(root)
        assert call["ppid"] in cluster.worker_pids
    tasks = repo.provenance()["tasks"]
    for task_id in ("a", "b", "v"):
        assert repo.report(task_id).is_file()
        assert tasks[task_id]["isolation"]["merged"] is True
    assert repo.path(tasks["a"]["isolation"]["patch"]).read_text().count("+A") == 1
    assert tasks["v"]["isolation"]["changed"] == 0
    assert not list((repo.root / ".rlm/local/worktrees/t").iterdir())
