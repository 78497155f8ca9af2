"""Drift: changes since the run started that no task owns, or that only tasks that never ran own (tmp git repos)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import Repo

from rlm_tasks import jsonio
from rlm_tasks.config import schema
from rlm_tasks.config.plan import load_plan
from rlm_tasks.state import drift
from rlm_tasks.state.context import RunContext

CONFIG = {
    "version": 1, "run_id": "r", "goal": "g", "agent": {"kind": "command", "command": ["true"]},
    "tasks": [
        {"id": "app", "goal": "edit the app", "owns": ["src/app/**"]},
        {"id": "lib", "goal": "edit the lib", "owns": ["src/lib/**"]},
        {"id": "reader", "goal": "read"},
    ],
}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                   cwd=root, check=True, capture_output=True)


def write(root: Path, name: str, text: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)


@pytest.fixture
def git_repo(repo: Repo) -> Path:
    """The harness's repository as a git work tree: a few files and rlm.yaml committed."""
    git(repo.root, "init", "-q")
    for name in ("src/app/main.py", "src/lib/util.py", "README.md", "notes/old.txt"):
        write(repo.root, name, "v1\n")
    repo.write(CONFIG)
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "start")
    return repo.root


def context(root: Path) -> RunContext:
    return RunContext(load_plan(root / "rlm.yaml"))


def test_drift_in_a_git_repo(git_repo: Path) -> None:
    write(git_repo, "notes/old.txt", "dirty before the run\n")  # already changed at the start: not drift
    write(git_repo, "notes/later.txt", "dirty before, edited during\n")
    ctx = context(git_repo)
    assert drift.take_baseline(ctx)
    assert not drift.take_baseline(ctx)  # once per run
    baseline = jsonio.read_json(ctx.layout.abs(drift.baseline_rel(ctx)))
    assert schema.check("drift_baseline", baseline) == []
    assert sorted(baseline["dirty"]) == ["notes/later.txt", "notes/old.txt"]

    # `app` ran (it has an attempt log); `lib` never did.
    write(git_repo, ".rlm/local/runs/r/logs/app.attempt-1.log", "ran\n")
    write(git_repo, "src/app/main.py", "v2\n")
    write(git_repo, "src/lib/util.py", "v2\n")
    write(git_repo, "src/lib/new.py", "new\n")
    write(git_repo, "README.md", "v2\n")
    write(git_repo, "notes/later.txt", "edited during the run\n")
    write(git_repo, "scratch.txt", "untracked\n")
    write(git_repo, ".rlm/runs/r/artifacts/reports/reader.md", "# report\n")  # the run's own output
    config = dict(CONFIG, goal="edited goal")
    (git_repo / "rlm.yaml").write_text(yaml.safe_dump(config))  # edit-and-rerun: not drift

    report = drift.report(context(git_repo))
    assert schema.check("drift", report) == []
    attribution = report.pop("attribution")
    assert [(a["path"], a["tasks"]) for a in attribution] == [  # no attempt of any task was recorded
        ("README.md", []), ("notes/later.txt", []), ("scratch.txt", []), ("src/lib/new.py", []),
        ("src/lib/util.py", [])]
    assert report == {
        "checked": True,
        "note": None,
        "since": baseline["taken_at"],
        "base_commit": baseline["head"],
        "changed_files": 6,
        "unowned": ["README.md", "notes/later.txt", "scratch.txt"],
        "owned_by_tasks_not_run": [{"path": "src/lib/new.py", "tasks": ["lib"]},
                                   {"path": "src/lib/util.py", "tasks": ["lib"]}],
    }


def test_commits_made_during_the_run_still_count(git_repo: Path) -> None:
    ctx = context(git_repo)
    drift.take_baseline(ctx)
    write(git_repo, "README.md", "committed during the run\n")
    git(git_repo, "commit", "-qam", "during")
    report = drift.report(ctx)
    assert report["unowned"] == ["README.md"]
    assert report["changed_files"] == 1


def test_without_a_baseline_head_stands_in(git_repo: Path) -> None:
    write(git_repo, "src/lib/util.py", "v2\n")
    report = drift.report(context(git_repo))
    assert report["note"] == "no baseline from the run's start: compared with HEAD"
    assert report["since"] is None
    assert report["owned_by_tasks_not_run"] == [{"path": "src/lib/util.py", "tasks": ["lib"]}]


@pytest.mark.hand_made_state  # a provenance entry with only its attempt number
def test_a_task_that_ran_owns_its_changes(git_repo: Path) -> None:
    ctx = context(git_repo)
    drift.take_baseline(ctx)
    jsonio.write_json(ctx.layout.provenance_json, {"version": 1, "run_id": "r", "tasks": {"lib": {"attempt": 1}}})
    write(git_repo, "src/lib/util.py", "v2\n")
    report = drift.report(context(git_repo))
    assert (report["changed_files"], report["unowned"], report["owned_by_tasks_not_run"]) == (1, [], [])


def test_not_a_git_repository(tmp_path: Path) -> None:
    (tmp_path / "rlm.yaml").write_text(yaml.safe_dump(CONFIG))
    ctx = context(tmp_path)
    drift.take_baseline(ctx)
    assert drift.report(ctx) == {
        "checked": False, "note": "not a git working tree: drift not checked", "since": None, "base_commit": None,
        "changed_files": 0, "unowned": [], "owned_by_tasks_not_run": [], "attribution": []}


def test_drift_is_attributed_to_the_task_whose_attempt_was_running(repo: Repo) -> None:
    git(repo.root, "init", "-q")
    write(repo.root, "README.md", "v1\n")
    write(repo.root, "src/app.py", "v1\n")
    write(repo.root, ".gitignore", "agent-*\n")  # the fake agent's own files
    # one after the other: the change falls in reader's attempt only (records keep whole seconds)
    repo.write_command([{"id": "reader", "goal": "R"}, {"id": "tidy", "goal": "T", "owns": ["src/**"],
                                                        "depends_on": ["reader"]}],
                       {"tidy": {"append": {"src/app.py": "owned\n"}},
                        "reader": {"append": {"README.md": "a reader edited this\n"}, "sleep": 1.5}})
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "start")
    assert repo.doit().code == 0
    state = json.loads(repo.path(".rlm/local/runs/t/reduce_state.local.json").read_text())
    found = state["drift"]
    assert schema.check("drift", found) == []
    assert found["unowned"] == ["README.md"]
    assert [(a["path"], a["tasks"]) for a in found["attribution"]] == [("README.md", ["reader"])]
    status = repo.rlm("status")
    assert ("drift: 1 file changed outside the tasks that ran: README.md (reader); details in "
            ".rlm/local/runs/t/reduce_state.local.json") in status.lines
    data = json.loads(repo.rlm("status", "--json").out)
    assert schema.check("status", data) == [] and data["drift"]["attribution"][0]["tasks"] == ["reader"]
    (repo.root / "README.md").unlink()  # deleted: no time, so no task to name
    assert drift.attribute(context(repo.root), ["README.md"]) == [
        {"path": "README.md", "changed_at": None, "tasks": []}]
