"""Resource errors in one place: a full disk, no file descriptors, a process limit, a name too long: one line
naming the resource and the path, exit 1 (3 stays "locked"); `rlm validate` checks report paths against the
filesystem's name and path limits."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Repo

from rlm_tasks.cli import main as cli_main
from rlm_tasks.errors import resource_error


def _config(report_path: str) -> dict[str, object]:
    return {"version": 1, "run_id": "t", "goal": "g", "agent": {"kind": "command", "command": ["true"]},
            "tasks": [{"id": "a", "goal": "g", "report_path": report_path}]}


def test_a_report_name_longer_than_the_filesystem_allows_is_refused(repo: Repo, capsys) -> None:  # type: ignore[no-untyped-def]
    repo.write(_config("notes/" + "n" * 300 + ".md"))
    assert cli_main.main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlm.yaml:") and "longer than this filesystem allows (255)" in err
    assert len(err.splitlines()) == 1


def test_a_report_path_longer_than_the_filesystem_allows_is_refused(repo: Repo, capsys) -> None:  # type: ignore[no-untyped-def]
    repo.write(_config("/".join(["d" * 200] * 25) + "/r.md"))
    assert cli_main.main(["validate"]) == 2
    err = capsys.readouterr().err
    assert "the path is " in err and "longer than this filesystem allows (4096)" in err


@pytest.mark.parametrize(("code", "says"), [
    (errno.ENOSPC, "no space left on the device: /repo/.rlm/x (ENOSPC)"),
    (errno.EMFILE, "too many open files in this process: /repo/.rlm/x (EMFILE)"),
    (errno.ENFILE, "too many open files on this system: /repo/.rlm/x (ENFILE)"),
    (errno.EAGAIN, "process limit reached (cannot start another process): /repo/.rlm/x (EAGAIN)"),
    (errno.ENAMETOOLONG, "a file name or path too long for the filesystem: /repo/.rlm/x (ENAMETOOLONG)"),
])
def test_a_resource_error_is_one_line_and_exit_1(repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys,  # type: ignore[no-untyped-def]
                                                 code: int, says: str) -> None:
    repo.write(_config("r.md"))

    def failing(args: object) -> int:
        raise OSError(code, os.strerror(code), "/repo/.rlm/x")

    real = cli_main.verb

    def patched(name: str) -> object:
        found = real(name)
        return found._replace(func=failing) if name == "status" else found

    monkeypatch.setattr(cli_main, "verb", patched)
    assert cli_main.main(["status"]) == 1
    assert capsys.readouterr().err == f"rlm: {says}; finished work is kept, run again once it is fixed\n"
    assert resource_error(OSError(errno.ENOENT, "x")) is None  # not a resource: still a bug report


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_a_full_disk_is_one_line(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        fd = os.open(small / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):  # until the disk is full
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        done = subprocess.run([sys.executable, "-m", "rlm_tasks", "init", "--agent", "command"], cwd=small,
                              capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 1, done
        assert done.stderr.startswith("rlm: no space left on the device: "), done.stderr
        assert "(ENOSPC)" in done.stderr and len(done.stderr.splitlines()) == 1
    finally:
        subprocess.run(["umount", str(small)], check=False)


FILL = """import os
open(os.environ["RLM_REPORT_PATH"], "w").write("# Contract Compliance\\nok\\n")
try:
    with open("filler", "ab") as f:
        while True:
            f.write(b"\\0" * 65536)
            f.flush()
except OSError:
    pass
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_a_disk_a_worker_fills_during_a_run_is_one_line_per_place(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (small / "fill.py").write_text(FILL)
        (small / "rlm.yaml").write_text(
            "version: 1\nrun_id: t\ngoal: g\nagent:\n  kind: command\n  command: ['{{ python }}', 'fill.py']\n"
            "tasks:\n  - {id: a, goal: g}\n  - {id: b, goal: g, depends_on: [a]}\n")
        (small / "dodo.py").write_text((Path(__file__).resolve().parent.parent / "rlm_tasks/starter/dodo.py")
                                       .read_text())
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        done = subprocess.run([sys.executable, "-m", "doit"], cwd=small, capture_output=True, text=True, env=env,
                              timeout=120, check=False)
        out = done.stdout + done.stderr
        assert done.returncode == 1, out
        assert "Traceback" not in out
        assert "  FAILED  map:a: no space left on the device: " in out and "(ENOSPC)" in out
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
