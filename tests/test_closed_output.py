"""Output nobody reads any more (`doit | head -1`, `rlm status | head`): no traceback, and a run still finishes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import Repo, subprocess_env


def run_with_closed_stdout(repo: Repo, *argv: str) -> tuple[int, str]:
    """Run a command whose stdout is a pipe nobody reads: every write to it fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, *argv], cwd=repo.root, env=subprocess_env(), stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


@pytest.mark.slow
def test_run_finishes_every_worker_when_nobody_reads_its_output(repo: Repo) -> None:
    repo.write_command([{"id": t, "goal": f"Task {t}."} for t in "abc"], {"*": {"sleep": 0.2}},
                       budget={"max_inflight": 2})
    repo.dodo()

    code, err = run_with_closed_stdout(repo, "-m", "doit")

    assert (code, err) == (0, "")
    assert all(repo.report(task).is_file() for task in "abc")
    assert repo.rlm("check").code == 0


@pytest.mark.parametrize("argv", [("-m", "doit", "list"), ("-m", "doit", "info", "map:a"),
                                  ("-m", "rlm_tasks", "status")])
@pytest.mark.slow
def test_a_listing_nobody_reads_exits_1_without_a_traceback(repo: Repo, argv: tuple[str, ...]) -> None:
    repo.write_command([{"id": "a", "goal": "Task a."}])
    assert repo.doit().code == 0
    repo.dodo()

    assert run_with_closed_stdout(repo, *argv) == (1, "")
