"""The run lock: live holders are never displaced, dead ones never block, foreign stale ones need --break-lock."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LockHolder, Repo

from rlm_tasks import clock, jsonio, procs
from rlm_tasks.config import schema
from rlm_tasks.layout import RunLayout, breaks_log
from rlm_tasks.lifecycle.hostlock import HostLock
from rlm_tasks.lifecycle.runlock import RunLock, RunLocked, RunLockStale


def _iso(hours_ago: float) -> str:
    return clock.iso(clock.utc_now() - dt.timedelta(hours=hours_ago))


@pytest.fixture
def layout(tmp_path: Path) -> RunLayout:
    return RunLayout(tmp_path, "r")


@pytest.fixture
def holder_process(repo: Repo) -> LockHolder:
    """A real process holding the run lock until the test releases it, crashes it or ends."""
    return repo.hold_lock("r")


def write_holder(layout: RunLayout, **fields: object) -> dict:
    holder = {"run_id": "r", "pid": 4242, "host": "elsewhere.invalid", "started_at": _iso(30), "boot_id": None}
    holder.update(fields)
    jsonio.write_json(layout.lock_holder_json, holder)
    return holder


def test_lock_held_by_a_live_process_is_never_taken(layout: RunLayout, holder_process: LockHolder) -> None:
    with pytest.raises(RunLocked) as caught:
        RunLock(layout).acquire(break_lock=True)
    holder = json.loads(layout.lock_holder_json.read_text())
    assert str(caught.value) == (f"run 'r' is locked by another process (pid {holder_process.pid} on host "
                                 f"{procs.hostname()}, started {holder['started_at']}); "
                                 "lock: .rlm/local/locks/r.lock")
    assert caught.value.exit_code == 3
    assert not isinstance(caught.value, RunLockStale)
    holder_process.release()
    with RunLock(layout):
        assert json.loads(layout.lock_holder_json.read_text())["pid"] == os.getpid()
    assert not layout.lock_holder_json.exists()


def test_lock_of_a_killed_process_does_not_block(layout: RunLayout, holder_process: LockHolder,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    holder_process.crash()
    left = json.loads(layout.lock_holder_json.read_text())
    assert left["pid"] == holder_process.pid  # left behind
    capsys.readouterr()
    lock = RunLock(layout)
    lock.acquire()
    recorded = json.loads(layout.lock_holder_json.read_text())
    assert recorded["pid"] == os.getpid()
    assert schema.check("lock_holder", recorded) == []
    lock.release()
    # taken, but never silently: one warning line and a record in the breaks log
    who = f"pid {holder_process.pid} on host {procs.hostname()}, started {left['started_at']}"
    assert capsys.readouterr().err == (f"rlm: warning: took the lock of run 'r' left by a dead holder ({who}); "
                                       "recorded in .rlm/local/locks/breaks.log\n")
    [line] = breaks_log(layout.root).read_text().splitlines()
    assert f"broke the lock of run 'r' left by a dead holder ({who}); taken by pid {os.getpid()} on host " in line


def test_live_holder_without_an_os_lock_is_never_taken(layout: RunLayout) -> None:
    """A filesystem without OS locks: the holder record alone says the lock is held; its process lives."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_holder(layout, pid=sleeper.pid, host=procs.hostname(), started_at=_iso(-0.001),
                     boot_id=procs.boot_id())
        with pytest.raises(RunLocked, match=rf"locked by a live process \(pid {sleeper.pid} on host"):
            RunLock(layout).acquire(break_lock=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    with RunLock(layout):  # now dead: taken
        pass


def test_stale_lock_on_a_foreign_host_needs_break_lock(layout: RunLayout) -> None:
    holder = write_holder(layout)
    with pytest.raises(RunLockStale) as caught:
        RunLock(layout).acquire()
    assert str(caught.value) == (
        f"run 'r' has a stale lock: pid 4242 on host elsewhere.invalid, started {holder['started_at']} "
        "(30.0 hours ago, more than lock_stale_hours 24); rlm cannot tell whether it still runs. If it does not, "
        "take the lock with --break-lock, e.g. `rlm run --break-lock` (logged to .rlm/local/locks/breaks.log)")
    assert caught.value.exit_code == 3
    assert json.loads(layout.lock_holder_json.read_text()) == holder  # refused: untouched
    assert not breaks_log(layout.root).exists()

    lock = RunLock(layout)
    lock.acquire(break_lock=True)
    assert json.loads(layout.lock_holder_json.read_text())["pid"] == os.getpid()
    lines = breaks_log(layout.root).read_text().splitlines()
    assert len(lines) == 1
    assert (f"broke the lock of run 'r' held by pid 4242 on host elsewhere.invalid, started {holder['started_at']} "
            f"(30.0 hours old, lock_stale_hours 24); taken by pid {os.getpid()} on host {procs.hostname()}"
            ) in lines[0]
    lock.release()


def test_recent_foreign_lock_is_not_stale_and_cannot_be_broken(layout: RunLayout) -> None:
    write_holder(layout, started_at=_iso(2))
    with pytest.raises(RunLocked, match=r"2\.0 hours ago\), which rlm cannot check from this host; the lock counts "
                                        r"as stale after lock_stale_hours \(24\)") as caught:
        RunLock(layout).acquire(break_lock=True)
    assert not isinstance(caught.value, RunLockStale)
    with pytest.raises(RunLockStale):
        RunLock(layout, stale_hours=1).acquire()  # runlock.lock_stale_hours lowers the bar


def test_without_os_locks_the_holder_record_is_the_lock(layout: RunLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    """No abstract sockets (not Linux) and a filesystem without OS locks."""
    monkeypatch.setattr(HostLock, "take", lambda self: False)
    monkeypatch.setattr(RunLock, "_take_os_lock", lambda self: False)
    first = RunLock(layout)
    first.acquire()
    with pytest.raises(RunLocked, match="locked by a live process"):
        RunLock(layout).acquire()  # same pid, no OS lock to prove otherwise: alive
    first.release()
    RunLock(layout).acquire()


@pytest.mark.slow
def test_rlm_run_break_lock(repo: Repo) -> None:
    repo.write_command([{"id": "only", "goal": "write a report"}], lifecycle={"lock_stale_hours": 12})
    layout = RunLayout(repo.root, "t")
    write_holder(layout, run_id="t", started_at=_iso(13))
    refused = repo.rlm("run")
    assert refused.code == 3
    assert "more than lock_stale_hours 12" in refused.err
    assert repo.rlm("run", "--break-lock").code == 0
    assert len(breaks_log(repo.root).read_text().splitlines()) == 1
    assert repo.report("only").exists()
    assert not layout.lock_holder_json.exists()  # released at the end of the run


@pytest.mark.slow
def test_a_worker_that_removes_the_lock_admits_no_second_orchestrator(repo: Repo) -> None:
    code = ("import os, shutil, time\nshutil.rmtree('.rlm/local/locks')\nopen('removed', 'w').close()\n"
            "while not os.path.exists('go'):\n    time.sleep(0.02)\n"
            "open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\nkept\\n')\n")
    repo.write({"version": 1, "run_id": "t", "goal": "g",
                "agent": {"kind": "command", "timeout": 60, "command": ["{{ python }}", "-c", code]},
                "tasks": [{"id": "a", "goal": "A"}]})
    first = repo.start_doit()
    repo.wait_for(lambda: repo.path("removed").exists(), "the worker removed .rlm/local/locks")
    second = repo.doit()
    assert (second.code, second.err) == (3, (
        f"rlm: run 't' is run by a live orchestrator (pid {first.pid}, recorded in .rlm/local/runs/t/inflight.json) "
        "although its lock file was removed; lock: .rlm/local/locks/t.lock\n"))
    repo.path("go").write_text("")
    code_first, out = first.finish()
    assert code_first == 0, out  # its worker was never ended by the second one
    assert repo.report("a").exists()


@pytest.mark.parametrize(("record", "what"), [
    ("{}", "does not match lock_holder.schema.json ((root): missing required key 'run_id')"),
    ("[]", "does not match lock_holder.schema.json ((root): expected a mapping, got a list)"),
    ('"x"', 'does not match lock_holder.schema.json ((root): expected a mapping, got a string ("x"))'),
    ('{"pid": "NaN"}', "does not match lock_holder.schema.json ((root): missing required key 'run_id')"),
    ('{"run_id": "t", "pid": "NaN", "host": "h", "started_at": "2026-01-01T00:00:00Z", "boot_id": null}',
     "does not match lock_holder.schema.json (pid: expected an integer, got a string (\"NaN\"))"),
    ('{"run_id": "t", "pid": 1, "ho', "not valid JSON"),
])
@pytest.mark.slow
def test_malformed_holder_record_is_refused_then_broken(repo: Repo, record: str, what: str) -> None:
    repo.write_command([{"id": "only", "goal": "write a report"}])
    layout = RunLayout(repo.root, "t")
    layout.lock_holder_json.parent.mkdir(parents=True, exist_ok=True)
    layout.lock_holder_json.write_text(record)
    for refused in (repo.rlm("run"), repo.rlm("archive"), repo.doit()):
        assert refused.code == 3, refused.err
        assert refused.err.strip().splitlines()[-1] == (
            f"rlm: run 't' has a malformed lock holder record .rlm/local/locks/t.holder.json: {what}; the OS lock "
            "is free, so if no rlm runs this run, take the lock with --break-lock, e.g. `rlm run --break-lock` "
            "(logged to .rlm/local/locks/breaks.log)")
        assert "Traceback" not in refused.err
    assert layout.lock_holder_json.read_text() == record  # refused: untouched
    assert repo.rlm("run", "--break-lock").code == 0
    assert "with a malformed holder record" in breaks_log(repo.root).read_text()
    assert repo.report("only").exists()
    assert not layout.lock_holder_json.exists()
