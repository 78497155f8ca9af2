"""The event log: one JSON line per event, written cheaply, read back whole or followed, replayed into counts."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from conftest import LOCAL_RUN, Repo

from rlm_tasks.config import schema
from rlm_tasks.layout import RunLayout
from rlm_tasks.state import events

FAIL = {"exit": 3, "report": "none"}


def test_emit_appends_one_schema_valid_line_per_event_and_drops_none(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, "r")
    events.emit(layout, events.Kind.RUN_START, tasks=3)
    events.emit(layout, events.Kind.ATTEMPT_END, worker_id="a", attempt=1, outcome="exit", exit_code=None)
    raw = events.events_path(layout).read_bytes().splitlines()
    assert len(raw) == 2
    found = events.read_all(layout)
    assert [e["kind"] for e in found] == ["run_start", "attempt_end"]
    assert "exit_code" not in found[1] and found[0]["host"] and found[0]["pid"] == os.getpid()
    for event in found:
        assert schema.check("event", event) == []
    assert events.events_rel(layout) == ".rlm/local/runs/r/events.jsonl"


def test_threads_never_interleave_lines(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, "r")

    def many(name: str) -> None:
        for n in range(200):
            events.emit(layout, events.Kind.USAGE, worker_id=name * 300, attempt=n, total_tokens=n)

    threads = [threading.Thread(target=many, args=(c,)) for c in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = events.read_all(layout)
    assert len(found) == 800
    assert all(set(e["worker_id"]) <= set("abcd") and len(e["worker_id"]) == 300 for e in found)


def test_a_torn_or_foreign_line_is_skipped_and_a_partial_last_line_waits(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, "r")
    events.emit(layout, events.Kind.RUN_START)
    path = events.events_path(layout)
    with path.open("ab") as handle:
        handle.write(b'{"kind": "nonsense", "at": 1}\n[1, 2]\nnot json\n{"kind": "run_end", "at": NaN\n')
    events.emit(layout, events.Kind.RUN_END)
    with path.open("ab") as handle:
        handle.write(b'{"v":1,"kind":"run_start","at":5')  # still being written
    found, offset = events.read(path)
    assert [e["kind"] for e in found] == ["run_start", "run_end"]
    assert offset == path.stat().st_size - len(b'{"v":1,"kind":"run_start","at":5')
    with path.open("ab") as handle:
        handle.write(b',"pid":1,"run_id":"r","v":1}\n')
    more, _ = events.read(path, offset)
    assert [e["kind"] for e in more] == ["run_start"]


def test_emit_never_fails_the_run(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, "r")
    target = events.events_path(layout)
    target.parent.mkdir(parents=True)
    (tmp_path / "elsewhere").write_text("keep\n")
    target.symlink_to(tmp_path / "elsewhere")  # a worker linked it out: not followed
    events.emit(layout, events.Kind.RUN_START)
    assert (tmp_path / "elsewhere").read_text() == "keep\n"


def test_a_line_for_a_person_escapes_control_characters() -> None:
    event = {"v": 1, "kind": "attempt_end", "run_id": "r", "at": 1_700_000_000.25, "pid": 1,
             "worker_id": "a\x1b[31m", "attempt": 2, "outcome": "exit", "message": "bad\nline"}
    assert events.line(event) == ("2023-11-14T22:13:20.250Z attempt_end   a\\x1b[31m#2 message=bad\\nline "
                                  "outcome=exit pid=1")


@pytest.mark.slow
def test_a_run_logs_its_attempts_and_replays_into_the_status_counts(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A", "retries": 1}, {"id": "b", "goal": "B"},
                        {"id": "c", "goal": "C"}, {"id": "d", "goal": "D", "depends_on": ["c"]}],
                       {"a": {"attempts": {"1": FAIL}}, "c": FAIL})
    assert repo.doit().code != 0
    layout = RunLayout(repo.root, "t")
    found = events.read_all(layout)
    kinds = [e["kind"] for e in found]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert found[-1]["failed"] == 1
    ends = [(e["worker_id"], e["attempt"], e["outcome"]) for e in found if e["kind"] == "attempt_end"]
    assert sorted(ends) == [("a", 1, "exit"), ("a", 2, "ok"), ("b", 1, "ok"), ("c", 1, "exit")]
    retry = [e for e in found if e["kind"] == "retry"]
    assert [(e["worker_id"], e["attempt"]) for e in retry] == [("a", 1)]
    assert retry[0]["message"] == f"attempt 1, exit: agent exited with code 3; log: {LOCAL_RUN}/logs/a.attempt-1.log"
    for event in found:
        assert schema.check("event", event) == []
    status = json.loads(repo.rlm("status", "--json").out)
    counts = {k: v for k, v in status["counts"].items() if v}
    assert events.replay(found, ["a", "b", "c", "d"]) == counts == {"fresh": 2, "failed": 1, "missing": 1}
    # `rlm events`: lines for a person, JSON for a tool
    out = repo.rlm("events")
    assert out.code == 0 and len(out.out.splitlines()) == len(found)
    assert " attempt_end   c#1 " in out.out
    as_json = repo.rlm("events", "--json")
    assert [json.loads(x) for x in as_json.out.splitlines()] == found
    follow = repo.rlm("events", "--follow", "--interval", "0.01")  # no run going: prints what there is and ends
    assert follow.code == 0 and follow.out == out.out


def test_no_events_is_one_line_on_stderr(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    result = repo.rlm("events")
    assert (result.code, result.out) == (0, "")
    assert result.err == "rlm: no events recorded for run t on this machine (.rlm/local/runs/t/events.jsonl)\n"
