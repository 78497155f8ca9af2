"""The speed-up cache (.rlm/local/cache/) never hides a change: every edit is seen, a broken cache only costs time."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from _robust import LOCAL, RUN, doit_in_process, make_repo, records

from rlm_tasks.cli.main import main
from rlm_tasks.config import schema
from rlm_tasks.state import cache

RACY = 0.05


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cache, "RACY_SECONDS", RACY)  # the real window is 2 s; the rule is the same
    (tmp_path / "src").mkdir()
    for name in ("a", "b"):
        (tmp_path / "src" / f"{name}.txt").write_text(f"input {name}\n")
    make_repo(tmp_path, [{"id": "a", "goal": "A", "inputs": ["src/a.txt"]},
                         {"id": "b", "goal": "B", "inputs": ["src/b.txt"]},
                         {"id": "c", "goal": "C", "depends_on": ["a"]}], {})
    assert doit_in_process() == 0
    settle()
    assert doit_in_process() == 0  # fills the cache: digests, marks
    settle()
    return tmp_path


def settle() -> None:
    time.sleep(RACY + 0.03)


SEEN: dict[Path, set[tuple[str, int]]] = {}


def ran(repo: Path) -> list[str]:
    """Worker ids started since the last call."""
    now = {(r["worker_id"], r["attempt"]) for r in records(repo)}
    new = now - SEEN.get(repo, set())
    SEEN[repo] = now
    return sorted(worker_id for worker_id, _ in new)


def marks(repo: Path) -> set[str]:
    (path,) = (repo / ".rlm/local/cache").glob("*.json")
    return set(json.loads(path.read_text())["marks"])


def test_a_noop_run_skips_everything_and_rewrites_nothing(repo: Path) -> None:
    ran(repo)
    assert marks(repo) >= {"settled", "plan_current", "reduce", "deferred"}
    (path,) = (repo / ".rlm/local/cache").glob("*.json")
    assert schema.check("cache", json.loads(path.read_text())) == []
    state = repo / LOCAL / "reduce_state.json"
    before = state.stat().st_mtime_ns
    assert doit_in_process() == 0
    assert ran(repo) == [] and state.stat().st_mtime_ns == before


def test_same_size_input_edit_is_seen(repo: Path) -> None:
    ran(repo)
    (repo / "src/a.txt").write_text("input A\n")  # same size, same second
    assert doit_in_process() == 0
    assert ran(repo) == ["a", "c"]  # c reads a's report, which changed


def test_hand_edited_report_and_deleted_provenance_are_seen(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ran(repo)
    report = repo / RUN / "artifacts/reports/b.md"
    report.write_text(report.read_text().replace("## What I did", "## What I did\nedited"))
    provenance = json.loads((repo / RUN / "provenance.json").read_text())
    del provenance["tasks"]["a"]
    (repo / RUN / "provenance.json").write_text(json.dumps(provenance))
    capsys.readouterr()
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert f"stale    map:a                          no_provenance  {RUN}/artifacts/reports/a.md\n" in out
    assert f"stale    map:b                          report_changed  {RUN}/artifacts/reports/b.md\n" in out
    assert doit_in_process() == 0
    assert ran(repo) == ["a", "b", "c"]


def test_plan_and_template_edits_are_seen(repo: Path) -> None:
    ran(repo)
    config = yaml.safe_load((repo / "rlm.yaml").read_text())
    config["tasks"][1]["goal"] = "B, differently"
    (repo / "rlm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert doit_in_process() == 0
    assert ran(repo) == ["b"]
    settle()
    (repo / "tpl").mkdir()
    builtin = Path(cache.BUILTIN_TEMPLATES / "worker_prompt.md.j2").read_text()
    (repo / "tpl/worker_prompt.md.j2").write_text(builtin + "\nBe brief.\n")
    config["templates_dir"] = "tpl"
    (repo / "rlm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert doit_in_process() == 0
    assert ran(repo) == ["a", "b", "c"]
    settle()
    (repo / "tpl/worker_prompt.md.j2").write_text(builtin + "\nBe BRIEF.\n")  # same size
    assert doit_in_process() == 0
    assert ran(repo) == ["a", "b", "c"]


def test_an_invalid_edit_is_refused_after_a_valid_cached_plan(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (repo / "rlm.yaml").read_text()
    (repo / "rlm.yaml").write_text(text.replace("goal: A", "goal: [A]"))
    capsys.readouterr()
    assert main(["check"]) == 2
    assert "tasks[0].goal: expected a string, got a list" in capsys.readouterr().err


def test_a_broken_or_foreign_cache_costs_only_time(repo: Path) -> None:
    ran(repo)
    for path in (repo / ".rlm/local/cache").glob("*.json"):
        path.write_text("{not json")
    assert doit_in_process() == 0
    assert ran(repo) == []
    # a cache copied from elsewhere (other inodes and ctimes) vouches for nothing
    (path,) = (repo / ".rlm/local/cache").glob("*.json")
    data = json.loads(path.read_text())
    data["files"] = {rel: [[1, 1, entry[0][2], 1], "0" * 64, entry[2]] for rel, entry in data["files"].items()}
    data["marks"] = {}
    path.write_text(json.dumps(data))
    (repo / "src/b.txt").write_text("input B\n")
    os.utime(repo / "src/b.txt", ns=(1, 1))
    assert doit_in_process() == 0
    assert ran(repo) == ["b"]
