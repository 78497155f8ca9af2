"""The OS file lock under the run and cleanup locks: one holder at a time, freed by the kernel when it dies."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Repo, subprocess_env

from rlm_tasks import oslock
from rlm_tasks.errors import UserError
from rlm_tasks.layout import RunLayout
from rlm_tasks.lifecycle import cleanup
from rlm_tasks.lifecycle.runlock import RunLock

HOLD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from rlm_tasks.oslock import OsLock
    lock = OsLock(Path(sys.argv[1]))
    assert lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    lock.release()
""")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding tmp_path/x.lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "x.lock")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=subprocess_env())
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def test_a_second_open_of_the_lock_is_refused_even_in_the_same_process(tmp_path: Path) -> None:
    first, second = oslock.OsLock(tmp_path / "x.lock"), oslock.OsLock(tmp_path / "x.lock")
    assert first.acquire() and first.held
    assert first.acquire()  # already ours
    assert not second.acquire() and not second.held
    first.release()
    assert not first.held
    assert second.acquire()
    second.release()
    assert os.listdir(tmp_path) == ["x.lock"]  # left in place: a new file of the same name would be a second lock


def test_a_lock_held_by_another_process_is_refused_then_waited_for(tmp_path: Path,
                                                                  holder: subprocess.Popen[str]) -> None:
    lock = oslock.OsLock(tmp_path / "x.lock")
    assert not lock.acquire()
    assert not lock.acquire(wait=0.2)
    assert holder.stdin is not None
    holder.stdin.close()  # it releases and ends; acquire polls until then
    assert lock.acquire(wait=30)
    lock.release()


def test_a_killed_holder_never_blocks(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.kill()
    holder.wait(timeout=30)
    lock = oslock.OsLock(tmp_path / "x.lock")
    assert lock.acquire()
    lock.release()


def test_a_symlink_in_place_of_the_lock_file_is_not_followed(tmp_path: Path) -> None:
    os.symlink(tmp_path / "elsewhere", tmp_path / "x.lock")
    with pytest.raises(OSError) as caught:
        oslock.OsLock(tmp_path / "x.lock").acquire()
    assert caught.value.errno == errno.ELOOP
    assert not oslock.unsupported(caught.value)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP])
def test_a_filesystem_without_os_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(oslock.fcntl, "flock", no_locks)
    with pytest.raises(OSError) as caught:
        oslock.OsLock(tmp_path / "x.lock").acquire()
    assert oslock.unsupported(caught.value)
    # the run lock: its holder record is the lock
    layout = RunLayout(tmp_path, "r")
    with RunLock(layout):
        assert layout.lock_holder_json.exists()
    # the cleanup lock: one clear line, never a traceback
    with pytest.raises(UserError) as refused, cleanup.locked(tmp_path):
        pass
    assert str(refused.value) == (f"cannot lock .rlm/local/locks/cleanup.lock: this filesystem has no OS locks "
                                  f"({os.strerror(code)})")


def test_a_symlink_in_place_of_a_lock_file_is_one_line_and_leads_nowhere(repo: Repo) -> None:
    repo.write_command([{"id": "only", "goal": "write a report"}])
    locks = repo.path(".rlm/local/locks")
    locks.mkdir(parents=True)
    os.symlink(repo.path("elsewhere"), locks / "t.lock")
    for refused in (repo.rlm("run"), repo.doit()):
        assert (refused.code, refused.err) == (1, (
            "rlm: cannot lock run 't': .rlm/local/locks/t.lock: a symlink stands in place of the lock file "
            "(not followed; remove it)\n"))
    os.symlink(repo.path("elsewhere"), locks / "cleanup.lock")
    cleanup_run = repo.rlm("cleanup")
    assert (cleanup_run.code, cleanup_run.err) == (1, (
        "rlm: cannot lock .rlm/local/locks/cleanup.lock: a symlink stands in place of the lock file "
        "(not followed; remove it)\n"))
    assert not repo.path("elsewhere").exists()
    assert not repo.report("only").exists()
