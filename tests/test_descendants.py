"""Issue 10: no descendant of a worker survives its attempt, also one that left the worker's process group
(`setsid`, double fork): when the worker exits by itself, when it times out, when the orchestrator is stopped."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import Repo, process_gone, wait_for

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
