"""The speed-up cache (.rlm/local/cache/) never hides a change: every edit is seen, a broken cache only costs time."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from conftest import RUN_DIR, Repo, wait_for

from rlm_tasks.config import schema
from rlm_tasks.resources import TEMPLATE_DIR
from rlm_tasks.state import cache, provenance, reports

RUN = RUN_DIR
RACY = 0.05
# every attempt writes a different report, so what reads a rerun task's report runs again too
SPEC = {"*": {"text": "# {worker_id}\n\n## What I did\nattempt {attempt}\n\n## Contract Compliance\n- kept\n"}}


@pytest.fixture
def cached(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """Three tasks run twice: every report fresh and the cache filled."""
    monkeypatch.setattr(cache, "RACY_SECONDS", RACY)  # the real window is 2 s; the rule is the same
    (repo.root / "src").mkdir()
    for name in ("a", "b"):
        (repo.root / "src" / f"{name}.txt").write_text(f"input {name}\n")
    repo.write_command([{"id": "a", "goal": "A", "inputs": ["src/a.txt"]},
                        {"id": "b", "goal": "B", "inputs": ["src/b.txt"]},
                        {"id": "c", "goal": "C", "depends_on": ["a"]}], SPEC)
    assert repo.doit().code == 0
    settle(repo)
    assert repo.doit().code == 0  # fills the cache: digests, marks
    settle(repo)
    return repo


def settle(repo: Repo) -> None:
    """Wait until every file is older than the racy window, so the cache may trust what it sees of them."""
    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in repo.root.rglob("*") if p.is_file())
    wait_for(lambda: time.time() > newest + RACY + 0.01, "the racy window to pass")


SEEN: dict[Path, set[tuple[str, int]]] = {}


def ran(cached: Repo) -> list[str]:
    """Worker ids started since the last call."""
    now = {(r["worker_id"], r["attempt"]) for r in cached.records()}
    new = now - SEEN.get(cached.root, set())
    SEEN[cached.root] = now
    return sorted(worker_id for worker_id, _ in new)


def cache_files(cached: Repo) -> tuple[Path, Path]:
    """(the plan and the marks, the digests beside them)."""
    (digests,) = (cached.root / ".rlm/local/cache").glob("*.digests.json")
    return digests.with_name(digests.name.replace(".digests", "")), digests


def marks(cached: Repo) -> set[str]:
    return set(json.loads(cache_files(cached)[0].read_text())["marks"])


@pytest.mark.slow
def test_a_noop_run_skips_everything_and_rewrites_nothing(cached: Repo) -> None:
    ran(cached)
    assert marks(cached) >= {"settled", "plan_current", "reduce", "deferred"}
    path, digests = cache_files(cached)
    assert schema.check("cache", json.loads(path.read_text())) == []
    assert schema.check("cache_digests", json.loads(digests.read_text())) == []
    state = cached.root / RUN_DIR / "reduce_state.json"
    before = state.stat().st_mtime_ns
    assert cached.doit().code == 0
    assert ran(cached) == [] and state.stat().st_mtime_ns == before


@pytest.mark.slow
def test_same_size_input_edit_is_seen(cached: Repo) -> None:
    ran(cached)
    (cached.root / "src/a.txt").write_text("input A\n")  # same size, same second
    assert cached.doit().code == 0
    assert ran(cached) == ["a", "c"]  # c reads a's report, which changed


@pytest.mark.slow
def test_hand_edited_report_and_deleted_provenance_are_seen(cached: Repo) -> None:
    ran(cached)
    report = cached.root / RUN / "artifacts/reports/b.md"
    report.write_text(report.read_text().replace("## What I did", "## What I did\nedited"))
    provenance = json.loads((cached.root / RUN / "provenance.json").read_text())
    del provenance["tasks"]["a"]
    (cached.root / RUN / "provenance.json").write_text(json.dumps(provenance))
    check = cached.rlm("check")
    assert check.code == 1
    out = check.out
    assert f"stale    map:a                          no_provenance  {RUN}/artifacts/reports/a.md\n" in out
    assert f"stale    map:b                          report_changed  {RUN}/artifacts/reports/b.md\n" in out
    assert cached.doit().code == 0
    assert ran(cached) == ["a", "b", "c"]


@pytest.mark.slow
def test_plan_and_template_edits_are_seen(cached: Repo) -> None:
    ran(cached)
    config = yaml.safe_load((cached.root / "rlm.yaml").read_text())
    config["tasks"][1]["goal"] = "B, differently"
    (cached.root / "rlm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert cached.doit().code == 0
    assert ran(cached) == ["b"]
    settle(cached)
    (cached.root / "tpl").mkdir()
    builtin = Path(TEMPLATE_DIR / "worker_prompt.md.j2").read_text()
    (cached.root / "tpl/worker_prompt.md.j2").write_text(builtin + "\nBe brief.\n")
    config["templates_dir"] = "tpl"
    (cached.root / "rlm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert cached.doit().code == 0
    assert ran(cached) == ["a", "b", "c"]
    settle(cached)
    (cached.root / "tpl/worker_prompt.md.j2").write_text(builtin + "\nBe BRIEF.\n")  # same size
    assert cached.doit().code == 0
    assert ran(cached) == ["a", "b", "c"]


@pytest.mark.slow
def test_an_invalid_edit_is_refused_after_a_valid_cached_plan(cached: Repo) -> None:
    text = (cached.root / "rlm.yaml").read_text()
    (cached.root / "rlm.yaml").write_text(text.replace("goal: A", "goal: [A]"))
    check = cached.rlm("check")
    assert check.code == 2
    assert "tasks[0].goal: expected a string, got a list" in check.err


@pytest.mark.slow
def test_a_broken_or_foreign_cache_costs_only_time(cached: Repo) -> None:
    ran(cached)
    for path in (cached.root / ".rlm/local/cache").glob("*.json"):
        path.write_text("{not json")
    assert cached.doit().code == 0
    assert ran(cached) == []
    # a cache copied from elsewhere (other inodes and ctimes) vouches for nothing
    path, digests = cache_files(cached)
    data = json.loads(digests.read_text())
    data["files"] = {rel: [[1, 1, entry[0][2], 1], "0" * 64, entry[2]] for rel, entry in data["files"].items()}
    digests.write_text(json.dumps(data))
    data = json.loads(path.read_text())
    data["marks"] = {}
    path.write_text(json.dumps(data))
    (cached.root / "src/b.txt").write_text("input B\n")
    os.utime(cached.root / "src/b.txt", ns=(1, 1))
    assert cached.doit().code == 0
    assert ran(cached) == ["b"]


@pytest.mark.slow
def test_a_settled_noop_reads_no_report_and_no_provenance(cached: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every task settled: a no-op `doit` and `rlm check` prove it with one stat per file (state.settled)."""
    ran(cached)

    def refuse(*_: object) -> None:
        raise AssertionError("a settled no-op read a report or provenance.json")

    monkeypatch.setattr(provenance.ProvenanceStore, "_load", refuse)
    monkeypatch.setattr(reports, "inspect", refuse)
    result = cached.doit()
    assert (result.code, result.out.splitlines()[-1].split(" in ")[0]) == (0, "rlm: 0 ran, 0 failed, 3 fresh")
    check = cached.rlm("check")
    assert (check.code, check.out) == (0, "run t: 3 tasks: 3 fresh, 0 stale, 0 missing, 0 invalid\n")
    assert ran(cached) == []


PARTIAL = ("# {worker_id}\n\n## What I did\nhalf\n\n## Self-termination\nout of time\n\n## Partial results\n- half\n\n"
           "## Next worker plan\n1. finish\n\n## Required scope\n- more time\n\n## Contract Compliance\n- kept\n")


@pytest.mark.slow
def test_a_partial_report_stays_partial_once_settled(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the settled mark knew of a report (it is partial) holds while the report does."""
    monkeypatch.setattr(cache, "RACY_SECONDS", RACY)
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], {"a": {"text": PARTIAL}})
    assert repo.doit().code == 0
    reports_dir = f"{RUN}/artifacts/reports"
    expected = ["run t: 2 tasks: 1 fresh, 0 stale, 0 missing, 0 invalid, 1 partial",
                f"partial  map:a{' ' * 26}next worker plan: {reports_dir}/a.md#next-worker-plan  {reports_dir}/a.md",
                "partial reports stop `rlm check` unless their task sets `accept_partial: true`"]
    for _ in range(3):  # the second and third checks rest on the settled mark
        settle(repo)
        check = repo.rlm("check")
        assert (check.code, check.out.splitlines()) == (1, expected)
        assert repo.doit().code == 0
    assert "settled" in marks(repo)
    assert [r["worker_id"] for r in repo.records()] == ["a", "b"]


@pytest.mark.slow
def test_a_settled_report_deleted_during_a_run_is_caught_by_the_closing_check(
        repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The closing check trusts a settled report's stat signature only while it is unchanged."""
    monkeypatch.setattr(cache, "RACY_SECONDS", RACY)
    reports_dir = f"{RUN}/artifacts/reports"
    repo.write("import os\nif os.path.exists('vandalize'):\n    os.remove('" + reports_dir + "/a.md')\n"
               "open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\n')\n", "worker.py")
    repo.write({"version": 1, "run_id": "t", "goal": "g",
                "agent": {"kind": "command", "timeout": 30, "command": ["{{ python }}", "worker.py"]},
                "tasks": [{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}]})
    for _ in range(2):
        assert repo.doit().code == 0
        settle(repo)
    assert "settled" in marks(repo)
    repo.write("", "vandalize")
    assert repo.doit_cli("forget", "map:b").code == 0
    result = repo.doit()
    assert (result.code, result.out.splitlines()[-1]) == (
        1, f"rlm: closing check: 1 report(s) deleted or changed during the run, not fresh: map:a deleted "
           f"{reports_dir}/a.md")


@pytest.mark.slow
def test_a_file_edited_inside_an_input_directory_is_seen(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory input's files are part of the settled mark: an edit in place leaves the directories' stat as is."""
    monkeypatch.setattr(cache, "RACY_SECONDS", RACY)
    (repo.root / "src/sub").mkdir(parents=True)
    (repo.root / "src/sub/a.txt").write_text("input a\n")
    repo.write_command([{"id": "a", "goal": "A", "inputs": ["src"]}, {"id": "b", "goal": "B"}], SPEC)
    for _ in range(2):
        assert repo.doit().code == 0
        settle(repo)
    assert "settled" in marks(repo)
    ran(repo)
    directories = [os.stat(repo.root / d).st_mtime_ns for d in ("src", "src/sub")]
    (repo.root / "src/sub/a.txt").write_text("input A\n")  # same size, same directory entries
    assert [os.stat(repo.root / d).st_mtime_ns for d in ("src", "src/sub")] == directories
    assert repo.doit().code == 0
    assert ran(repo) == ["a"]
    settle(repo)
    (repo.root / "src/sub/new.txt").write_text("new\n")  # a new file deeper than the declared directory
    assert repo.doit().code == 0
    assert ran(repo) == ["a"]
