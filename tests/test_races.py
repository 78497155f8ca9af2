"""Races with a run in progress: every doit verb that changes state honours the run lock."""

from __future__ import annotations

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
