"""provenance.json plus its journal: O(1) per finished task, crash-safe, compacted into one reviewable file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import RUN_DIR, Repo

from rlm_tasks.config import schema
from rlm_tasks.state import provenance as provenance_module
from rlm_tasks.state.provenance import ProvenanceError, ProvenanceStore


def entry(n: int) -> dict[str, Any]:
    digest = f"{n:064x}"
    return {"worker_id": f"w{n}", "mode": "map", "report_path": f"r/w{n}.md", "attempt": 1, "report_sha256": digest,
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
            "digests": {"prompt": digest, "contract": digest, "agent": digest, "inputs": {}}}


def store(tmp_path: Path) -> ProvenanceStore:
    return ProvenanceStore(tmp_path / "provenance.json", "r")


def journal_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "provenance.journal.jsonl").read_text().splitlines()]


def test_a_finished_task_appends_one_line_and_leaves_provenance_json_alone(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.record("w1", entry(1))
    s.compact()
    before = (tmp_path / "provenance.json").stat()
    s.record("w2", entry(2))
    s.forget("w1")
    s.forget("nobody")  # nothing to forget: no line
    after = (tmp_path / "provenance.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    lines = journal_lines(tmp_path)
    assert lines == [{"op": "record", "worker_id": "w2", "entry": entry(2)}, {"op": "forget", "worker_id": "w1"}]
    assert [schema.check("provenance_journal", line) for line in lines] == [[], []]
    assert store(tmp_path).entries() == {"w2": entry(2)}  # a reader replays the journal


def test_compact_folds_the_journal_into_one_file_and_removes_it(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.compact() is False
    s.record("w1", entry(1))
    s.record("w2", entry(2))
    assert s.compact() is True
    assert not (tmp_path / "provenance.journal.jsonl").exists()
    data = json.loads((tmp_path / "provenance.json").read_text())
    assert data == {"version": 1, "run_id": "r", "tasks": {"w1": entry(1), "w2": entry(2)}}
    assert schema.check("provenance", data) == []
    assert s.compact() is False  # nothing new: provenance.json is not rewritten


def test_the_journal_is_compacted_once_it_outgrows_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provenance_module, "COMPACT_AFTER_LINES", 3)
    s = store(tmp_path)
    for n in range(3):
        s.record(f"w{n}", entry(n))
    assert len(journal_lines(tmp_path)) == 3 and not (tmp_path / "provenance.json").exists()
    s.record("w3", entry(3))  # 4 lines > max(3, 4 entries)? no: still 4 <= 4
    assert len(journal_lines(tmp_path)) == 4
    s.forget("w3")  # 5 lines > max(3, 3 entries): compacted
    assert not (tmp_path / "provenance.journal.jsonl").exists()
    assert sorted(json.loads((tmp_path / "provenance.json").read_text())["tasks"]) == ["w0", "w1", "w2"]
    s.record("w4", entry(4))  # a new journal after compaction
    assert store(tmp_path).entries().keys() == {"w0", "w1", "w2", "w4"}


def test_a_torn_last_line_was_never_acknowledged_and_is_dropped(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.record("w1", entry(1))
    with (tmp_path / "provenance.journal.jsonl").open("ab") as handle:
        handle.write(b'{"op":"record","worker_id":"w2","ent')  # SIGKILL in the middle of an append
    assert store(tmp_path).entries() == {"w1": entry(1)}
    again = store(tmp_path)
    again.record("w3", entry(3))  # the torn tail is cut before the next line
    assert [line["worker_id"] for line in journal_lines(tmp_path)] == ["w1", "w3"]
    assert store(tmp_path).entries() == {"w1": entry(1), "w3": entry(3)}


def test_a_corrupt_complete_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.record("w1", entry(1))
    with (tmp_path / "provenance.journal.jsonl").open("ab") as handle:
        handle.write(b"[1, 2]\n")
    path = tmp_path / "provenance.journal.jsonl"
    with pytest.raises(ProvenanceError) as raised:
        store(tmp_path).entries()
    assert str(raised.value) == f"{path}:2: not a JSON object"
    path.write_bytes(b"{oops\n")
    with pytest.raises(ProvenanceError) as raised:
        store(tmp_path).entries()
    assert str(raised.value) == (f"{path}:1: not valid JSON: "
                                 "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")


def test_replaying_a_journal_the_file_already_holds_changes_nothing(tmp_path: Path) -> None:
    """A crash after compaction wrote provenance.json but before it removed the journal."""
    s = store(tmp_path)
    s.record("w1", entry(1))
    s.forget("w1")
    s.record("w2", entry(2))
    kept = (tmp_path / "provenance.journal.jsonl").read_bytes()
    s.compact()
    (tmp_path / "provenance.journal.jsonl").write_bytes(kept)
    assert store(tmp_path).entries() == {"w2": entry(2)}


@pytest.mark.slow
def test_sigkill_loses_only_the_running_task_and_the_next_run_compacts(repo: Repo) -> None:
    repo.write_command([{"id": f"quick{n}", "goal": "Q"} for n in range(3)] + [{"id": "slow", "goal": "S"}],
                       {"*": {}, "slow": {"hang": True}})
    run = repo.start_doit(RLM_KEEP_WORKERS="1")  # the worker outlives the SIGKILL (the default ends it)
    repo.wait_for(lambda: len(repo.tasks_done()) == 3 and len(repo.calls()) == 4, "three finished tasks")
    run.proc.kill()  # SIGKILL: no handler, no compaction
    run.finish()
    assert repo.path(f"{RUN_DIR}/provenance.journal.jsonl").exists()
    status = repo.rlm("status", "--json")
    states = {t["id"]: t["state"] for t in json.loads(status.out)["tasks"]}
    # the orphaned worker still runs (the next run ends it): status says so rather than "missing"
    assert states == {"quick0": "fresh", "quick1": "fresh", "quick2": "fresh", "slow": "running"}
    repo.agent_spec({})
    again = repo.doit_cli()
    assert again.code == 0, again.out + again.err
    assert "rlm: 1 ran, 0 failed, 3 fresh in " in again.out
    assert not repo.path(f"{RUN_DIR}/provenance.journal.jsonl").exists()
    assert sorted(repo.provenance()["tasks"]) == ["quick0", "quick1", "quick2", "slow"]
    assert [(r["worker_id"], r["attempt"]) for r in repo.records()] == [
        ("quick0", 1), ("quick1", 1), ("quick2", 1), ("slow", 1), ("slow", 2)]
