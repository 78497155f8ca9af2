"""Races with a run in progress: every doit verb that changes state honours the run lock."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import Repo


@pytest.mark.parametrize("verb", [("forget", "map:a"), ("forget", "--all"), ("ignore", "map:a"),
                                  ("reset-dep",)])
def test_state_changing_doit_verbs_wait_for_no_run(repo: Repo, verb: tuple[str, ...]) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    assert repo.doit_cli().code == 0
    holder = repo.hold_lock()
    try:
        result = repo.doit_cli(*verb, timeout=30)
    finally:
        holder.release()
    assert result.code == 3, result
    assert result.err.startswith("rlm: run 't' is locked by another process"), result.err
    assert len(result.err.splitlines()) == 1
    again = repo.doit_cli(*verb, timeout=30)  # once the run is over, it works
    assert again.code == 0, again


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                   cwd=root, check=True, capture_output=True)


@pytest.mark.parametrize("switch", [("checkout", "-q", "-b", "other"), ("switch", "-q", "-c", "other"),
                                    ("checkout", "-q", "--detach")])
def test_a_run_never_writes_its_state_onto_a_branch_switched_to_under_it(repo: Repo, switch: tuple[str, ...]) -> None:
    go = repo.root / "go"
    repo.write_command([{"id": "quick", "goal": "Q"}, {"id": "slow", "goal": "S"}],
                       {"slow": {"wait_for": str(go)}})
    (repo.root / ".gitignore").write_text("/.rlm/local/\ngo\nagent-*\n")
    git(repo.root, "init", "-q")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "start")
    run = repo.start_doit()
    repo.wait_for(lambda: "quick" in repo.tasks_done() and len(repo.calls()) == 2, "quick done, slow running")
    git(repo.root, *switch)
    go.touch()
    code, out = run.finish()
    assert code == 1, out
    assert "rlm: HEAD moved during the run (from " in out
    assert "slow" not in repo.tasks_done()  # the old branch's memory is not written on the new branch
