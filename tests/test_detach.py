"""`rlm run --detach` + `rlm wait`: exit codes 0/1/3, small outputs, the background process recorded."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import LOCAL_RUN, REPO, RUN_DIR, Repo

from rlm_tasks.config import schema

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from bench.common import record_fresh

pytestmark = pytest.mark.slow  # see CONTRIBUTING.md: the fast subset


def test_detach_wait_exit_codes(repo: Repo) -> None:
    go = repo.root / "go"  # the workers finish once the test has seen the run still going
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], {"*": {"wait_for": str(go)}})
    started = repo.rlm_cli("run", "--detach")
    assert started.code == 0, started.out + started.err
    state = json.loads((repo.local_dir / "detached.json").read_text())
    assert schema.check("detached", state) == []
    assert started.out == (f"rlm: run t started in the background (pid {state['pid']}); "
                           f"log: {LOCAL_RUN}/detached.log; "
                           "`rlm wait` returns when it ends, `rlm status` shows progress\n")
    again = repo.rlm_cli("run", "--detach")
    assert again.code == 3
    assert (again.out, again.err) == ("", f"rlm: run 't' is already running in the background (pid {state['pid']}); "
                               "`rlm wait` waits for it\n")
    waited = repo.rlm_cli("wait", "--timeout", "0.2")
    assert waited.code == 3, waited.out + waited.err
    assert waited.out.startswith("rlm: run t still running after 0.2s: 0/2 done, ")
    assert waited.out.endswith("; `rlm wait` again or `rlm status --watch`; rlm wait exits 3\n")
    assert repo.rlm_cli("status").code == 0
    go.touch()
    done = repo.rlm_cli("wait")
    assert done.code == 0, done.out + done.err
    assert done.out == (f"rlm: run t finished (exit 0): 2/2 fresh; inventory: {RUN_DIR}/reduce_state.json; "
                        f"log: {LOCAL_RUN}/detached.log; rlm wait exits 0\n")
    state = json.loads((repo.local_dir / "detached.json").read_text())
    assert state["exit_code"] == 0 and state["finished_at"] and schema.check("detached", state) == []
    log = (repo.local_dir / "detached.log").read_text()
    assert log.startswith("rlm: run t: 2 tasks\n") and "rlm: 2 ran, 0 failed, 0 fresh in " in log
    assert repo.rlm_cli("wait", "--timeout", "0").code == 0  # finished: no waiting at all


def test_thousand_tasks_three_failures_print_under_2kb(repo: Repo) -> None:
    failing = ["task-0007", "task-0500", "task-0999"]
    repo.write_command([{"id": f"task-{i:04d}", "goal": f"Task {i}."} for i in range(1000)],
                       {worker_id: {"exit": 3, "report": "none"} for worker_id in failing})
    record_fresh(repo.root)
    provenance = repo.provenance()
    for worker_id in failing:
        del provenance["tasks"][worker_id]
        repo.report(worker_id).unlink()
    (repo.run_dir / "provenance.json").write_text(json.dumps(provenance))

    outputs = [repo.rlm_cli("run", "--detach")]
    assert outputs[0].code == 0
    waited = repo.rlm_cli("wait")
    assert waited.code == 1, waited.out + waited.err
    assert waited.out == (
        f"rlm: run t finished (exit 1): 997/1000 fresh, 3 failed: map:task-0007, map:task-0500, map:task-0999; "
        f"inventory: {RUN_DIR}/reduce_state.json; log: {LOCAL_RUN}/detached.log; rlm wait exits 1\n")
    outputs += [waited, repo.rlm_cli("status")]
    for out in outputs:
        assert len((out.out + out.err).encode()) < 2048, out.out + out.err
    assert "3 failed (task-0007, task-0500, task-0999)" in outputs[2].out
    assert [r["worker_id"] for r in repo.records()] == failing  # nothing fresh ran again
