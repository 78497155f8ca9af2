"""SIGKILL of the orchestrator mid-run, then resume: orphans ended (or adopted), finished tasks never rerun."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from _robust import LOCAL, group_gone, kill_leftovers, make_repo, provenance, records, start_doit, wait_for

from rlm_tasks.config import schema

TASKS = [{"id": "done", "goal": "D"}, {"id": "slow", "goal": "S"}, {"id": "slower", "goal": "S"}]


@pytest.fixture
def repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield tmp_path
    kill_leftovers(tmp_path)


def inflight(repo: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((repo / LOCAL / "inflight.json").read_text())


def kill_orchestrator_mid_run(repo: Path, spec: dict) -> list[dict]:  # type: ignore[type-arg]
    """Start doit, SIGKILL it once 'done' is recorded and both slow workers run; return their inflight entries."""
    make_repo(repo, TASKS, spec)
    proc = start_doit(repo)
    try:
        wait_for(lambda: len(inflight_entries(repo)) == 2 and "done" in _provenance(repo), what="two running workers")
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.communicate(timeout=10)
    entries = inflight_entries(repo)
    assert schema.check("inflight", inflight(repo)) == []
    assert {e["worker_id"] for e in entries} == {"slow", "slower"}
    for entry in entries:
        os.killpg(entry["pgid"], 0)  # the orphans are still running
        assert entry["pgid"] == entry["pid"] and entry["attempt"] == 1 and entry["compute_tier"] == "standard"
    return entries


def test_sigkill_then_resume_ends_orphans(repo: Path) -> None:
    entries = kill_orchestrator_mid_run(repo, {"*": {"sleep": 60, "child": True}, "done": {"sleep": 0}})
    (repo / "spec.json").write_text("{}")
    again = start_doit(repo)
    out, _ = again.communicate(timeout=30)
    assert again.returncode == 0, out
    assert "rlm: ended 2 worker group(s) a dead orchestrator (pid " in out
    assert "left running: map:slow, map:slower\n" in out
    for entry in entries:
        assert group_gone(entry["pgid"])
    for record in records(repo):
        assert group_gone(record["pgid"]) and group_gone(record["child"] or record["pgid"])
    # finished tasks never run again; the orphaned tasks ran once more
    assert [(r["worker_id"], r["attempt"]) for r in records(repo)] == [
        ("done", 1), ("slow", 1), ("slow", 2), ("slower", 1), ("slower", 2)]
    assert {k: v["attempt"] for k, v in provenance(repo).items()} == {"done": 1, "slow": 2, "slower": 2}
    assert inflight(repo)["entries"] == []


def test_sigkill_then_adopt_accepts_the_orphans_reports(repo: Path) -> None:
    entries = kill_orchestrator_mid_run(repo, {"*": {"sleep": 1.5}, "done": {"sleep": 0}})
    again = start_doit(repo, extra_env={"RLM_ADOPT": "1"})
    out, _ = again.communicate(timeout=30)
    assert again.returncode == 0, out
    assert "rlm: adopting 2 worker(s) a dead orchestrator (pid " in out
    assert "  adopt   map:slow  attempt 1 left running by a dead orchestrator\n" in out
    for entry in entries:
        assert group_gone(entry["pgid"])
    assert [(r["worker_id"], r["attempt"]) for r in records(repo)] == [("done", 1), ("slow", 1), ("slower", 1)]
    entries_now = provenance(repo)
    assert entries_now["slow"]["adopted"] is True and entries_now["slow"]["attempt"] == 1
    again = start_doit(repo)
    out, _ = again.communicate(timeout=30)
    assert "rlm: 0 ran, 0 failed, 3 fresh in " in out


def inflight_entries(repo: Path) -> list[dict]:  # type: ignore[type-arg]
    try:
        return list(inflight(repo)["entries"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


def _provenance(repo: Path) -> dict:  # type: ignore[type-arg]
    try:
        return provenance(repo)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_dead_orchestrator_record_is_not_alive(repo: Path) -> None:
    from rlm_tasks.run import inflight

    assert not inflight.entry_alive({"pgid": 0}) and not inflight.entry_alive({"pgid": "x"})
    assert inflight.orchestrator_alive({"orchestrator": {"pid": os.getpid(), "host": socket.gethostname()}})
    assert not inflight.orchestrator_alive({"orchestrator": {"pid": os.getpid(), "finished_at": "x"}})
