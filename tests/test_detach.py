"""`rlm run --detach` + `rlm wait`: exit codes 0/1/3, small outputs, the background process recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from _robust import LOCAL, ROOT, RUN, config, kill_leftovers, make_repo, records, rlm, write_spec

from rlm_tasks.config import schema

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.common import record_fresh


@pytest.fixture
def repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield tmp_path
    kill_leftovers(tmp_path)


def test_detach_wait_exit_codes(repo: Path) -> None:
    make_repo(repo, [{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], {"*": {"sleep": 1.5}})
    started = rlm(repo, "run", "--detach")
    assert started.returncode == 0, started.stdout
    state = json.loads((repo / LOCAL / "detached.json").read_text())
    assert schema.check("detached", state) == []
    assert started.stdout == (f"rlm: run robust started in the background (pid {state['pid']}); "
                              f"log: {LOCAL}/detached.log; "
                              "`rlm wait` returns when it ends, `rlm status` shows progress\n")
    again = rlm(repo, "run", "--detach")
    assert again.returncode == 3
    assert again.stdout == (f"rlm: run 'robust' is already running in the background (pid {state['pid']}); "
                            "`rlm wait` waits for it\n")
    waited = rlm(repo, "wait", "--timeout", "0.2")
    assert waited.returncode == 3, waited.stdout
    assert waited.stdout.startswith("rlm: run robust still running after 0.2s: 0/2 done, ")
    assert rlm(repo, "status").returncode == 0
    done = rlm(repo, "wait")
    assert done.returncode == 0, done.stdout
    assert done.stdout == (f"rlm: run robust finished (exit 0): 2/2 fresh; inventory: {LOCAL}/reduce_state.json; "
                           f"log: {LOCAL}/detached.log\n")
    state = json.loads((repo / LOCAL / "detached.json").read_text())
    assert state["exit_code"] == 0 and state["finished_at"] and schema.check("detached", state) == []
    log = (repo / LOCAL / "detached.log").read_text()
    assert log.startswith("rlm: run robust: 2 tasks\n") and "rlm: 2 ran, 0 failed, 0 fresh in " in log
    assert rlm(repo, "wait", "--timeout", "0").returncode == 0  # finished: no waiting at all


def test_thousand_tasks_three_failures_print_under_2kb(repo: Path) -> None:
    cfg = config([{"id": f"task-{i:04d}", "goal": f"Task {i}."} for i in range(1000)])
    (repo / "rlm.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (repo / "dodo.py").write_text((ROOT / "dodo.py").read_text())
    record_fresh(repo)
    failing = ["task-0007", "task-0500", "task-0999"]
    provenance = json.loads((repo / RUN / "provenance.json").read_text())
    for worker_id in failing:
        del provenance["tasks"][worker_id]
        (repo / RUN / f"artifacts/reports/{worker_id}.md").unlink()
    (repo / RUN / "provenance.json").write_text(json.dumps(provenance))
    write_spec(repo, {worker_id: {"fail": [1]} for worker_id in failing})

    outputs = [rlm(repo, "run", "--detach")]
    assert outputs[0].returncode == 0
    waited = rlm(repo, "wait")
    assert waited.returncode == 1, waited.stdout
    assert waited.stdout == (
        f"rlm: run robust finished (exit 1): 997/1000 fresh, 3 failed: map:task-0007, map:task-0500, map:task-0999; "
        f"inventory: {LOCAL}/reduce_state.json; log: {LOCAL}/detached.log\n")
    outputs += [waited, rlm(repo, "status")]
    for out in outputs:
        assert len(out.stdout.encode()) < 2048, out.stdout
    assert "3 failed (task-0007, task-0500, task-0999)" in outputs[2].stdout
    assert [r["worker_id"] for r in records(repo)] == failing  # nothing fresh ran again
