"""SIGTERM/SIGINT to a real `python -m doit`: forwarded to every worker group, finished tasks kept, 143/130."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from _robust import LOCAL, RUN, group_gone, kill_leftovers, make_repo, provenance, records, start_doit, wait_for

TASKS = [{"id": "quick", "goal": "Q"}, {"id": "slow1", "goal": "S"}, {"id": "slow2", "goal": "S"},
         {"id": "later", "goal": "L", "depends_on": ["slow1"]}]
SPEC = {"*": {"sleep": 60, "child": True}, "quick": {"sleep": 0}}


@pytest.fixture
def repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    make_repo(tmp_path, TASKS, SPEC)
    yield tmp_path
    kill_leftovers(tmp_path)


@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_signal_forwarded_no_orphan_finished_task_kept(repo: Path, sig: int, code: int, name: str) -> None:
    proc = start_doit(repo)
    try:
        wait_for(lambda: len(records(repo)) == 3 and "quick" in _provenance_or_empty(repo), what="workers to start")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, out
    assert f"rlm: interrupted by {name}; signalled 2 running worker group(s); 1 ran, 0 failed, 0 fresh in " in out
    for record in records(repo):
        assert group_gone(record["pgid"]), record  # the worker and the grandchild it started
        assert group_gone(record["child"] or record["pgid"])
    assert set(provenance(repo)) == {"quick"}  # the finished task stays recorded
    inflight = json.loads((repo / LOCAL / "inflight.json").read_text())
    assert inflight["entries"] == [] and inflight["orchestrator"]["finished_at"]
    assert not (repo / RUN / "artifacts/reports/slow1.md").exists()
    # the next run does not run the finished task again
    (repo / "spec.json").write_text("{}")
    again = start_doit(repo)
    out, _ = again.communicate(timeout=30)
    assert again.returncode == 0, out
    assert [r["worker_id"] for r in records(repo)].count("quick") == 1
    assert "rlm: 3 ran, 0 failed, 1 fresh in " in out


def _provenance_or_empty(repo: Path) -> dict[str, object]:
    try:
        return provenance(repo)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
