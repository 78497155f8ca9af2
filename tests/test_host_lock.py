"""The run lock no file holds (Linux): a worker that removes all of .rlm/local/ admits no second orchestrator,
a killed orchestrator frees it at once, and no orchestrator ends the workers of one that is alive."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Repo, group_gone

from rlm_tasks import jsonio, procs
from rlm_tasks.layout import RunLayout
from rlm_tasks.lifecycle import hostlock
from rlm_tasks.lifecycle.runlock import RunLock, RunLocked
from rlm_tasks.run import housekeeping
from rlm_tasks.state.context import RunContext

pytestmark = pytest.mark.slow  # see CONTRIBUTING.md: the fast subset

linux_only = pytest.mark.skipif(not hostlock.SUPPORTED, reason="abstract sockets are Linux only")

LOCKED = ("rlm: run 't' is locked by another process on this host (its holder record was removed, but the lock "
          "holds); lock: .rlm/local/locks/t.lock\n")


def command_worker(repo: Repo, code: str) -> None:
    repo.write({"version": 1, "run_id": "t", "goal": "g",
                "agent": {"kind": "command", "timeout": 60, "command": ["{{ python }}", "-c", code]},
                "tasks": [{"id": "a", "goal": "A"}]})


@linux_only
def test_a_worker_that_removes_all_of_rlm_local_admits_no_second_orchestrator(repo: Repo) -> None:
    code = ("import os, shutil, time\nshutil.rmtree('.rlm/local')\nopen('removed', 'w').close()\n"
            "while not os.path.exists('go'):\n    time.sleep(0.02)\n"
            "open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\nkept\\n')\n")
    command_worker(repo, code)
    first = repo.start_doit()
    repo.wait_for(lambda: repo.path("removed").exists(), "the worker removed .rlm/local/")
    try:
        assert not (repo.root / ".rlm" / "local").exists()  # the lock file, holder record and inflight.json with it
        for second in (repo.doit_cli(), repo.rlm_cli("run"), repo.rlm_cli("run", "--break-lock"),
                       repo.rlm_cli("archive"), repo.doit_cli("clean", "map:a")):
            assert (second.code, second.err) == (3, LOCKED)
        detached = repo.rlm_cli("run", "--detach")
        assert (detached.code, detached.err) == (3, "rlm: run 't' is locked by another process on this host; "
                                                    "`rlm wait` waits for it\n")
        waited = repo.rlm_cli("wait", "--timeout", "0.2")
        assert waited.code == 3, waited.out + waited.err
        assert waited.out.startswith("rlm: run t still running after 0.2s: ")
    finally:  # the worker ends whatever happened above, never left waiting
        repo.path("go").write_text("")
    code_first, out = first.finish()
    assert code_first == 0, out  # its worker was never ended: it wrote its report itself
    assert out.splitlines()[-2:] == [
        "rlm: .rlm/local/doit.sqlite3 was removed during the run and is written anew (a cache: provenance decides "
        "what is fresh)",
        f"rlm: 1 ran, 0 failed, 0 fresh in {out.rsplit(' fresh in ', 1)[1].split(';')[0]}; "
        "inventory: .rlm/runs/t/reduce_state.json"]
    assert repo.report("a").read_text() == "# Contract Compliance\nkept\n"
    assert repo.rlm_cli("run").code == 0  # released with the first run


def test_a_killed_orchestrator_frees_the_lock_at_once(repo: Repo) -> None:
    """SIGKILL leaves the holder record behind and the first attempt's worker running (its own process group):
    the kernel freed the socket, and the worker never inherited it."""
    code = ("import os, time\nif not os.path.exists('first'):\n    open('first', 'w').write(str(os.getpid()))\n"
            "    time.sleep(120)\n"
            "open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\nsecond\\n')\n")
    command_worker(repo, code)
    first = repo.start_doit(RLM_KEEP_WORKERS="1")  # the worker outlives the SIGKILL (the default ends it)
    repo.wait_for(lambda: repo.path("first").exists() and repo.path("first").read_text(), "the first worker")
    orphan = int(repo.path("first").read_text())
    first.proc.send_signal(signal.SIGKILL)
    first.finish()
    layout = RunLayout(repo.root, "t")
    try:
        assert layout.lock_holder_json.exists() and procs.pid_alive(orphan)
        second = repo.rlm_cli("run")
        assert second.code == 0, second.out + second.err
        assert group_gone(orphan)  # the dead orchestrator's worker was ended by the next run
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(orphan, signal.SIGKILL)  # never left sleeping when an assertion above failed
    assert repo.report("a").read_text() == "# Contract Compliance\nsecond\n"


@pytest.mark.hand_made_state  # an inflight.json entry with only what the test needs
def test_an_orchestrator_never_ends_the_workers_of_a_live_one(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the lock could be got although another orchestrator runs (its files removed on a platform without
    the host lock, then rewritten by it), inflight.json naming a live orchestrator stops the run before any
    worker is ended."""
    repo.write_command([{"id": "a", "goal": "A"}])
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    orchestrator = subprocess.Popen(sleep)
    worker = subprocess.Popen(sleep, start_new_session=True)
    layout = RunLayout(repo.root, "t")
    original = housekeeping.on_run_start

    def rewritten_meanwhile(ctx: RunContext, write: Callable[[str], None]) -> None:
        original(ctx, write)
        jsonio.write_json(layout.abs(layout.inflight_rel), {
            "version": 1, "run_id": "t",
            "orchestrator": {"pid": orchestrator.pid, "host": procs.hostname(), "started_at": "2026-01-01T00:00:00Z",
                             "started": 0.0, "pid_start_ticks": procs.start_ticks(orchestrator.pid)},
            "entries": [{"worker_id": "a", "doit_name": "map:a", "attempt": 1, "pid": worker.pid, "pgid": worker.pid,
                         "pid_start_ticks": procs.start_ticks(worker.pid)}]})

    monkeypatch.setattr(housekeeping, "on_run_start", rewritten_meanwhile)
    try:
        refused = repo.doit()
        assert (refused.code, refused.err) == (3, (
            f"rlm: run 't' is run by a live orchestrator (pid {orchestrator.pid}, recorded in "
            ".rlm/local/runs/t/inflight.json); its workers are its own, none was ended and nothing ran\n"))
        assert worker.poll() is None and procs.pid_alive(worker.pid)
        assert not repo.report("a").exists()
        assert not layout.lock_holder_json.exists()  # the lock was given back
        assert not hostlock.held_on_this_host(repo.root, "t")
    finally:
        for proc in (orchestrator, worker):
            proc.kill()
            proc.wait()


@linux_only
def test_a_second_lock_in_the_same_process_is_refused_by_the_socket(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, "r")
    first = RunLock(layout)
    first.acquire()
    layout.lock_holder_json.unlink()
    with pytest.raises(RunLocked) as caught:
        RunLock(layout).acquire(break_lock=True)
    assert str(caught.value) == ("run 'r' is locked by another process on this host (its holder record was removed, "
                                 "but the lock holds); lock: .rlm/local/locks/r.lock")
    assert hostlock.held_on_this_host(tmp_path, "r")
    first.release()
    assert not hostlock.held_on_this_host(tmp_path, "r")
    with RunLock(layout):
        pass


def test_one_name_per_repository_and_run(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "repo")
    name = hostlock.lock_name(tmp_path / "repo", "r")
    assert name == hostlock.lock_name(tmp_path / "link", "r")  # the same repository through a symlink
    assert len({name, hostlock.lock_name(tmp_path / "repo", "s"), hostlock.lock_name(tmp_path, "r")}) == 3
    assert len(b"\0" + name.encode()) <= 108


def test_without_abstract_sockets_the_file_lock_alone_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostlock, "SUPPORTED", False)  # as on macOS
    layout = RunLayout(tmp_path, "r")
    with RunLock(layout):
        assert not hostlock.held_on_this_host(tmp_path, "r")
        with pytest.raises(RunLocked, match=r"^run 'r' is locked by another process \(pid \d+ on host "):
            RunLock(layout).acquire()  # the OS file lock refuses
    assert os.listdir(layout.lock_file.parent) == ["r.lock"]
