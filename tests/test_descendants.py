"""No descendant of a worker survives its attempt, also one that left the worker's process group
(`setsid`, double fork): when the worker exits by itself, when it times out, when the orchestrator is stopped.

One that also cleared its whole environment carries no attempt tag: on Linux the process running the attempts
is its child subreaper (run/orphans.py), ends it and reaps it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Repo, process_gone, process_reaped, wait_for

from rlm_tasks import procs
from rlm_tasks.run import orphans

pytestmark = pytest.mark.slow  # see CONTRIBUTING.md: the fast subset

SUBREAPER = pytest.mark.skipif(procs.child_subreaper() is None,
                               reason="Linux only: prctl(PR_SET_CHILD_SUBREAPER) and /proc")

ESCAPE = """\
import os, sys, time
if os.fork() == 0:          # double fork: the grandchild is nobody's child once the middle one exits
    os.setsid()             # and in a session and process group of its own
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as out:
            out.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(120)
    os._exit(0)
os.wait()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
if sys.argv[2] == "hang":
    time.sleep(120)
with open(os.environ["RLM_REPORT_PATH"], "w") as report:
    report.write("# Contract Compliance\\n")
"""


def escaping_run(repo: Repo, behaviour: str, timeout: float = 30) -> Path:
    repo.write(ESCAPE, "escape.py")
    pid_file = repo.root / "grandchild.pid"
    repo.write({"version": 1, "run_id": "t", "goal": "g",
                "agent": {"kind": "command", "timeout": timeout,
                          "command": ["{{ python }}", "escape.py", str(pid_file), behaviour]},
                "tasks": [{"id": "a", "goal": "A"}]})
    return pid_file


@pytest.mark.parametrize(("behaviour", "timeout", "code"), [("exit", 30, 0), ("hang", 2, 1)])
def test_a_grandchild_that_left_the_process_group_is_ended(repo: Repo, behaviour: str, timeout: float,
                                                           code: int) -> None:
    pid_file = escaping_run(repo, behaviour, timeout)
    result = repo.doit()
    assert result.code == code, result.out
    pid = int(pid_file.read_text())
    assert process_gone(pid), f"grandchild {pid} survived the attempt"


def test_a_grandchild_is_ended_when_the_orchestrator_is_stopped(repo: Repo) -> None:
    pid_file = escaping_run(repo, "hang")
    run = repo.start_doit()
    wait_for(pid_file.exists, "the grandchild to start")
    pid = int(pid_file.read_text())
    os.kill(run.pid, signal.SIGTERM)
    code, out = run.finish()
    assert code == 143, out
    assert process_gone(pid), f"grandchild {pid} survived SIGTERM of the orchestrator"


def untagged_escape(repo: Repo, spec: dict[str, Any], **top: Any) -> Path:
    """Task `a`'s worker leaves a grandchild in a session of its own with an empty environment (fake_agent escape)."""
    pid_file = repo.root / "escapee.pid"
    repo.write_command([{"id": "a", "goal": "A"}], {"a": {"escape": str(pid_file), **spec}}, **top)
    return pid_file


@SUBREAPER
@pytest.mark.parametrize(("spec", "top", "code"), [
    ({}, {}, 0),
    ({"escape_middle_stays": True}, {}, 0),
    ({"hang": True}, {"agent": {"timeout": 1}}, 1),
    ({"hang": True}, {"defaults": {"stall_after": 1}}, 1),
], ids=["exit", "exit-middle-killed-last", "timeout", "stall"])
def test_a_grandchild_with_no_tag_left_is_ended_and_reaped(repo: Repo, spec: dict[str, Any], top: dict[str, Any],
                                                          code: int) -> None:
    pid_file = untagged_escape(repo, spec, **top)
    result = repo.doit()
    assert result.code == code, result.out
    pid = int(pid_file.read_text())
    assert process_reaped(pid), f"grandchild {pid} survived the attempt, or was left a zombie"
    assert not procs.child_subreaper()  # only while attempts run


@SUBREAPER
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_grandchild_with_no_tag_left_is_ended_when_the_orchestrator_is_stopped(repo: Repo, sig: int) -> None:
    pid_file = untagged_escape(repo, {"hang": True})
    run = repo.start_doit()
    wait_for(pid_file.exists, "the grandchild to start")
    pid = int(pid_file.read_text())
    os.kill(run.pid, sig)
    code, out = run.finish()
    assert code == 128 + sig, out
    assert process_reaped(pid), f"grandchild {pid} survived {signal.Signals(sig).name} of the orchestrator"


@SUBREAPER
def test_a_running_worker_and_its_escaped_grandchild_outlive_another_attempts_end(repo: Repo) -> None:
    """b waits until a's attempt has ended (its sweep done) and fails if its own grandchild was ended meanwhile;
    a worker rlm started in a session of its own is never taken for an orphan."""
    a_pid, b_pid = repo.root / "a.pid", repo.root / "b.pid"
    a_history = repo.root / ".rlm/runs/t/artifacts/attempts/a.json"
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}],
                       {"a": {"escape": str(a_pid), "barrier": 2, "barrier_wait": 20},
                        "b": {"escape": str(b_pid), "barrier": 2, "barrier_wait": 20,
                              "wait_text": [str(a_history), '"outcome": "ok"']}},
                       agent={"env": {"FAKE_AGENT_BARRIER_DIR": str(repo.root / "barrier")}})
    result = repo.doit()
    assert result.code == 0, result.out
    assert repo.report("a").exists() and repo.report("b").exists()
    for pid_file in (a_pid, b_pid):
        assert process_reaped(int(pid_file.read_text()))


@SUBREAPER
def test_a_process_in_a_session_of_its_own_that_was_ours_before_the_run_is_left_alone(repo: Repo) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        pid_file = untagged_escape(repo, {})
        result = repo.doit()
        assert result.code == 0, result.out
        assert process_reaped(int(pid_file.read_text()))
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


@SUBREAPER
def test_the_sweep_never_reaps_a_process_rlm_started_in_a_session_of_its_own() -> None:
    """Its exit status belongs to its Popen: a sweep that reaped it would leave Popen a made-up 0."""
    with orphans.adopting():
        proc = orphans.spawn([sys.executable, "-c", "raise SystemExit(7)"])
        try:
            wait_for(lambda: not procs.pid_alive(proc.pid), "it to exit")  # a zombie now, our child, another session
            assert orphans.sweep() == 0
            assert proc.wait() == 7
        finally:
            proc.wait()
            orphans.forget(proc.pid)
