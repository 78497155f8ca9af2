"""SIGTERM/SIGINT/SIGHUP to a real `python -m doit`: forwarded to every worker group, finished tasks kept,
143/130/129; SIGKILL: the watchdog ends the workers."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from conftest import RUN_DIR, Repo, group_gone, process_gone

pytestmark = pytest.mark.slow  # see CONTRIBUTING.md: the fast subset

TASKS = [{"id": "quick", "goal": "Q"}, {"id": "slow1", "goal": "S"}, {"id": "slow2", "goal": "S"},
         {"id": "later", "goal": "L", "depends_on": ["slow1"]}]
SPEC = {"*": {"hang": True, "child": True}, "quick": {"hang": False, "child": False}}


@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT"),
                                                   (signal.SIGHUP, 129, "SIGHUP")])
def test_signal_forwarded_no_orphan_finished_task_kept(repo: Repo, sig: int, code: int, name: str) -> None:
    repo.write_command(TASKS, SPEC)
    run = repo.start_doit()
    # quick counted as ran (its ok line printed) and both slow workers running
    run.wait_line("  ok      map:quick  ")
    repo.wait_for(lambda: len(repo.records()) == 3, "three workers to start")
    run.proc.send_signal(sig)
    exit_code, out = run.finish(timeout=30)
    assert exit_code == code, out
    assert f"rlm: interrupted by {name}; signalled 2 running worker group(s); 1 ran, 0 failed, 0 fresh in " in out
    for record in repo.records():
        assert group_gone(record["pgid"]), record  # the worker and the grandchild it started
    assert set(repo.tasks_done()) == {"quick"}  # the finished task stays recorded
    inflight = repo.inflight()
    assert inflight["entries"] == [] and inflight["orchestrator"]["finished_at"]
    assert not (repo.root / RUN_DIR / "artifacts/reports/slow1.md").exists()
    # the next run does not run the finished task again
    repo.agent_spec({})
    again_code, again = repo.start_doit().finish()
    assert again_code == 0, again
    assert [r["worker_id"] for r in repo.records()].count("quick") == 1
    assert "rlm: 3 ran, 0 failed, 1 fresh in " in again


@pytest.mark.parametrize("spec", [{"*": {"hang": True, "child": True}},
                                  {"*": {"hang": True, "child": True, "ignore_term": True}}])
def test_sigkill_of_the_orchestrator_ends_its_workers(repo: Repo, spec: dict[str, Any]) -> None:
    """No handler runs on SIGKILL: the watchdog sees the orchestrator's end and ends every worker group."""
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], spec)
    run = repo.start_doit()
    repo.wait_for(lambda: len(repo.records()) == 2, "two workers to start")
    run.proc.kill()
    run.finish(timeout=30)
    for record in repo.records():
        assert group_gone(record["pgid"], timeout=20), record  # the worker and the grandchild it started
        assert record.get("child") is None or process_gone(record["child"], timeout=20), record


def test_sigkill_keep_workers_leaves_them_for_adoption(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}], {"*": {"hang": True}})
    run = repo.start_doit(RLM_KEEP_WORKERS="1")
    repo.wait_for(lambda: len(repo.records()) == 1, "a worker to start")
    run.proc.kill()
    run.finish(timeout=30)
    pgid = repo.records()[0]["pgid"]
    assert not group_gone(pgid, timeout=1.0)  # still running, for `--adopt`
    os.killpg(pgid, signal.SIGKILL)
