"""What people watch: plain state-change lines without a terminal, a live line on one, status from files."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from conftest import LOCAL_RUN, RUN_DIR, Repo

from rlm_tasks.clock import iso
from rlm_tasks.config.plan import load_plan
from rlm_tasks.run import reporter
from rlm_tasks.state import history, progress
from rlm_tasks.state.context import RunContext

RUN = RUN_DIR
LOCAL = LOCAL_RUN
FAIL = {"exit": 3, "report": "none"}


@pytest.mark.slow
def test_plain_lines_without_a_terminal(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A", "retries": 1}, {"id": "b", "goal": "B", "depends_on": ["a"]},
                        {"id": "c", "goal": "C"}], {"a": {"attempts": {"1": FAIL}}, "c": FAIL})
    result = repo.doit("-n", "1")
    assert result.code == 1
    out = re.sub(r"\d+\.\d+s", "Ns", result.out)
    assert out == (
        "rlm: run t: 3 tasks\n"
        "  start   map:a  attempt 1, standard\n"
        f"  retry   map:a: attempt 1, exit: agent exited with code 3; log: {LOCAL}/logs/a.attempt-1.log; "
        "attempt 2 (standard) in Ns\n"
        "  start   map:a  attempt 2, standard\n"
        f"  ok      map:a  Ns  {RUN}/artifacts/reports/a.md  attempt 2, standard\n"
        "  start   map:b  attempt 1, standard\n"
        f"  ok      map:b  Ns  {RUN}/artifacts/reports/b.md\n"
        "  start   map:c  attempt 1, standard\n"
        f"  FAILED  map:c: attempt 1, exit: agent exited with code 3; log: {LOCAL}/logs/c.attempt-1.log\n"
        f"rlm: 2 ran, 1 failed, 0 fresh in Ns; inventory: {RUN}/reduce_state.json\n"
    )
    assert "fake agent" not in out  # worker output stays in its log


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.slow
def test_live_line_on_a_terminal(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], {"a": {"sleep": 0.8}})
    monkeypatch.setattr(reporter, "TICK_SECONDS", 0.1)
    monkeypatch.setenv("TERM", "xterm")
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    assert repo.doit().code == 0
    out = tty.getvalue()
    assert re.search(r"\r\x1b\[2Krlm: 1/2 done, 1 running, 0 failed, 0:0\d elapsed, longest map:a 0:0\d", out), out
    assert "  start " not in out  # on a terminal the live line shows what runs
    assert "  ok      map:a  " in out and "fake agent" not in out
    assert out.endswith(f"inventory: {RUN}/reduce_state.json\n")


def test_progress_line_format() -> None:
    snap = progress.Snapshot(total=40, done=12, running=8, failed=1, elapsed=3725, longest=("map:x", 31))
    assert progress.line(snap) == "12/40 done, 8 running, 1 failed, 1:02:05 elapsed, longest map:x 0:31"
    assert progress.line(progress.Snapshot(3, 3, 0, 0)) == "3/3 done, 0 running, 0 failed"


def test_view_from_files_alone(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}, {"id": "c", "goal": "C"},
                        {"id": "d", "goal": "D"}])
    assert repo.doit("map:a").code == 0
    ctx = RunContext(load_plan("rlm.yaml"))
    now = time.time()
    for worker_id, session in (("c", now - 65), ("d", now - 200)):  # c failed in this run, d in the one before
        history.record(ctx.layout, "t", worker_id, {
            "attempt": 1, "compute_tier": "standard", "outcome": "exit", "detail": "agent exited with code 3",
            "log_path": f"{LOCAL}/logs/{worker_id}.attempt-1.log", "started_at": iso(session + 5),
            "finished_at": iso(session + 6), "exit_code": 3, "session": session})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        (repo.local_dir / "inflight.json").write_text(json.dumps({
            "version": 1, "run_id": "t",
            "orchestrator": {"pid": os.getpid(), "host": socket.gethostname(), "started_at": "x",
                             "started": now - 65},
            "entries": [{"worker_id": "b", "doit_name": "map:b", "attempt": 1, "pid": sleeper.pid,
                         "pgid": sleeper.pid, "started_at": "x", "started": now - 5, "compute_tier": "standard"}],
        }))
        snap = progress.from_files(ctx)
        assert (snap.total, snap.done, snap.running, snap.failed, snap.active) == (4, 1, 1, 1, True)
        assert snap.longest is not None and snap.longest[0] == "map:b" and 4 < snap.longest[1] < 30
        assert snap.elapsed is not None and 64 < snap.elapsed < 120
    finally:
        sleeper.kill()
        sleeper.wait()
    assert progress.from_files(ctx).running == 0


def test_status_watch_when_nothing_runs(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    assert repo.doit().code == 0
    watched = repo.rlm("status", "--watch", "--interval", "0.1")
    assert (watched.code, watched.out) == (0, "rlm: run t: 1/1 done, 0 running, 0 failed (not running)\n")


PARTIAL_REPORT = ("# {worker_id}\n\n## What I did\nhalf\n\n## Self-termination\nout of time\n\n## Partial results\n"
                  "- half\n\n## Next worker plan\n1. finish\n\n## Required scope\n- more time\n\n"
                  "## Contract Compliance\n- kept\n")


@pytest.mark.slow
def test_partial_reports_are_counted_as_partial(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}],
                       {"a": {"text": PARTIAL_REPORT}, "b": {"sleep": 0.8}})
    monkeypatch.setattr(reporter, "TICK_SECONDS", 0.1)
    monkeypatch.setenv("TERM", "xterm")
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    assert repo.doit().code == 0
    out = tty.getvalue()
    assert re.search(r"rlm: 1/2 done \(1 partial\), 1 running, 0 failed, 0:0\d elapsed, longest map:b", out), out
    monkeypatch.undo()
    watched = repo.rlm("status", "--watch", "--interval", "0.1")
    assert (watched.code, watched.out) == (0, "rlm: run t: 2/2 done (1 partial), 0 running, 0 failed (not running)\n")
