"""State files under attack or corruption: doit's database is only a cache; JSON state with the wrong
shape is validated on read."""

from __future__ import annotations

import json

import pytest
from conftest import RUN_DIR, Repo

from rlm_tasks.layout import DOIT_DB


def test_a_corrupt_doit_database_is_set_aside_and_rebuilt(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}])
    assert repo.doit().code == 0
    repo.path(DOIT_DB).write_bytes(b"this is not a database" * 100)
    result = repo.doit()
    assert result.code == 0, result.out
    [aside] = [p.name for p in repo.path(DOIT_DB).parent.iterdir() if p.name.startswith("doit.sqlite3.unreadable-")]
    assert result.err == (f"rlm: warning: {DOIT_DB} was not a readable database; set aside as {aside} and rebuilt "
                          "(provenance decides what is fresh)\n")
    assert repo.ran() == ["a"]  # provenance said fresh: nothing ran again
    assert repo.doit().err == ""


@pytest.mark.slow
@pytest.mark.hand_made_state  # provenance.json of the wrong shape, on purpose
def test_provenance_of_the_wrong_shape_is_one_line_and_exit_1(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}])
    assert repo.doit().code == 0
    provenance = repo.path(f"{RUN_DIR}/provenance.json")
    data = json.loads(provenance.read_text())
    data["tasks"]["a"]["digests"] = "garbage"
    provenance.write_text(json.dumps(data))
    for verb in ("status", "check"):
        result = repo.rlm_cli(verb)
        assert (result.code, result.out, result.err) == (
            1, "", f"rlm: {provenance}: tasks.a: wrong shape: 'digests' is not an object; "
                   "fix it or delete it (every task then runs again)\n")
    provenance.write_text('{"tasks": {"a": NaN}}')
    result = repo.rlm_cli("check")
    assert (result.code, result.err) == (1, f"rlm: {provenance}: not valid JSON: NaN is not valid JSON\n")


@pytest.mark.slow
def test_a_cache_of_the_wrong_shape_is_discarded(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}])
    assert repo.doit().code == 0
    [digests] = list(repo.path(".rlm").rglob("cache/*.digests.json"))
    data = json.loads(digests.read_text())
    data["files"] = {name: "garbage" for name in data["files"]} or {"x": "garbage"}
    digests.write_text(json.dumps(data))
    cache = digests.with_name(digests.name.replace(".digests", ""))
    data = json.loads(cache.read_text())
    data["marks"] = {name: ["garbage"] for name in data["marks"]} or {"x": ["garbage"]}
    cache.write_text(json.dumps(data))
    result = repo.rlm_cli("check")
    assert (result.code, result.err) == (0, "")
