"""RLM_KILL_GRACE_SECONDS: how long a worker asked to stop has before SIGKILL; a bad value is refused up front."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import Repo

from rlm_tasks.run import worker

# Stops on SIGTERM only after a moment, leaving a file to show it got there.
SLOW_TO_STOP = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    def stop(signum, frame):
        time.sleep(0.3)
        Path(sys.argv[1]).touch()
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while True:
        time.sleep(3600)
""")


@pytest.mark.parametrize(("grace", "killed"), [("0", True), ("30", False)])
def test_the_grace_period_decides_between_sigterm_and_sigkill(repo: Repo, monkeypatch: pytest.MonkeyPatch,
                                                              grace: str, killed: bool) -> None:
    monkeypatch.setenv("RLM_KILL_GRACE_SECONDS", grace)
    stopped = repo.root / "stopped"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_TO_STOP, str(stopped)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        worker.end_group(proc.pid)
        assert proc.wait(timeout=30) == (-9 if killed else 0)
        assert stopped.exists() is not killed
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


@pytest.mark.parametrize(("raw", "value"), [("", 3.0), ("0", 0.0), ("0.25", 0.25), (" 2\n", 2.0), ("3600", 3600.0)])
def test_valid_values(monkeypatch: pytest.MonkeyPatch, raw: str, value: float) -> None:
    monkeypatch.setenv("RLM_KILL_GRACE_SECONDS", raw)
    assert worker.kill_grace() == value


def test_unset_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLM_KILL_GRACE_SECONDS", raising=False)
    assert worker.kill_grace() == worker.KILL_GRACE_SECONDS == 3.0


BAD = ["soon", "nan", "inf", "-inf", "-1", "3600.5", "1e400", "0x10", "1 2"]


def refusal(raw: str) -> str:
    return f"RLM_KILL_GRACE_SECONDS: expected a number of seconds from 0 to 3600, got {raw.strip()!r}\n"


@pytest.mark.parametrize("raw", BAD)
def test_a_bad_value_is_one_line_exit_2_before_anything_runs(repo: Repo, monkeypatch: pytest.MonkeyPatch,
                                                             raw: str) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}])
    monkeypatch.setenv("RLM_KILL_GRACE_SECONDS", raw)
    for result in (repo.doit(), repo.rlm("run"), repo.rlm("run", "--detach")):
        assert (result.code, result.out, result.err) == (2, "", refusal(raw))
    assert repo.calls() == []
    assert not (repo.local_dir / "detached.json").exists()


@pytest.mark.slow
def test_the_real_commands_refuse_a_bad_value(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}])
    for result in (repo.doit_cli(RLM_KILL_GRACE_SECONDS="nan"), repo.rlm_cli("run", RLM_KILL_GRACE_SECONDS="nan"),
                   repo.rlm_cli("run", "--detach", RLM_KILL_GRACE_SECONDS="nan")):
        assert (result.code, result.out, result.err) == (2, "", refusal("nan"))
    assert repo.calls() == []
