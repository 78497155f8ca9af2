"""SIGKILL of the orchestrator at random points of a busy first run: no finished task is lost, none is fresh falsely.

A run writes its per-task records in batches (the provenance journal's shared appends, inflight.json's coalesced
writes, attempt records that are not fsynced on their own): whatever moment the orchestrator dies, every task
whose provenance entry was recorded stays done and never runs again, and a task is fresh only with a report
that is byte for byte the one its entry recorded.
"""

from __future__ import annotations

import hashlib
import json
import random
import time

import pytest
from conftest import RUN_DIR, Repo

TASKS = [{"id": f"t{i:02d}", "goal": f"Task {i}."} for i in range(24)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("seed", range(4))
def test_a_sigkill_anywhere_loses_no_finished_task_and_marks_none_fresh_falsely(repo: Repo, seed: int) -> None:
    rng = random.Random(seed)
    repo.write_command(TASKS, {"*": {"sleep": 0.02}}, budget={"max_inflight": 6})
    run = repo.start_doit()
    try:
        at_least = rng.randrange(1, len(TASKS) - 4)  # somewhere in the middle of the run, then a little later
        repo.wait_for(lambda: len(repo.tasks_done()) >= at_least, f"{at_least} tasks recorded")
        time.sleep(rng.uniform(0, 0.05))
    finally:
        run.proc.kill()  # SIGKILL: no handler, no cleanup, whatever a writer was doing
        run.finish()
    finished = repo.tasks_done()  # provenance.json with its journal replayed, as the next run reads it
    assert len(finished) >= at_least

    status = json.loads(repo.rlm("status", "--json").out)
    fresh = {row["id"] for row in status["tasks"] if row["state"] == "fresh"}
    assert fresh == set(finished)  # every recorded task is fresh, no other
    for worker_id in fresh:
        report = repo.report(worker_id).read_bytes()
        assert sha256(report) == finished[worker_id]["report_sha256"], worker_id
    assert len(repo.calls()) >= len(finished)

    code, out = repo.start_doit().finish()
    assert code == 0, out
    starts = {}
    for call in repo.calls():
        starts[call["worker_id"]] = starts.get(call["worker_id"], 0) + 1
    for worker_id in finished:  # recorded before the kill: never ran again
        assert starts[worker_id] == 1, (worker_id, starts)
    assert set(repo.tasks_done()) == {task["id"] for task in TASKS}
    assert repo.rlm("check").code == 0
    assert not (repo.root / RUN_DIR / "provenance.journal.jsonl").exists()  # folded into provenance.json at the end
