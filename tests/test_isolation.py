"""Editing workers in isolation, end to end with real git: worktree per attempt, drift, gate, merge, conflict."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import LOCAL_RUN, RUN_DIR, Repo

from rlm_tasks.config import schema
from rlm_tasks.layout import RunLayout
from rlm_tasks.state import history

pytestmark = pytest.mark.slow  # real git and a run per test: seconds each


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def tree(repo: Repo) -> Repo:
    """`repo` as a git repository with one commit: a.txt, src/b.py."""
    git(repo.root, "init", "-q")
    repo.write("/.rlm/local/\n/agent-log.jsonl\n/agent-spec.json\n/barrier/\n", ".gitignore")
    repo.write("one\ntwo\nthree\n", "a.txt")
    repo.write("x = 1\n", "src/b.py")
    git(repo.root, "add", "-A")
    git(repo.root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return repo


def editor(task_id: str, owns: list[str], **more: Any) -> dict[str, Any]:
    return {"id": task_id, "goal": f"edit {task_id}", "isolation": "worktree", "owns": owns, **more}


def attempts_of(repo: Repo, worker_id: str) -> list[dict[str, Any]]:
    return history.read(RunLayout(repo.root, "t"), worker_id)


def test_two_editors_on_disjoint_files_both_merge(tree: Repo) -> None:
    tree.write_command([editor("a", ["a.txt"]), editor("b", ["src/**"])],
                       {"a": {"append": {"a.txt": "from a\n"}}, "b": {"append": {"src/b.py": "y = 2\n"}}})
    result = tree.doit()
    assert result.code == 0, result.out + result.err
    assert tree.path("a.txt").read_text() == "one\ntwo\nthree\nfrom a\n"
    assert tree.path("src/b.py").read_text() == "x = 1\ny = 2\n"
    done = tree.tasks_done()
    for task_id in ("a", "b"):
        info = done[task_id]["isolation"]
        assert info["merged"] is True and info["changed"] == 1
        patch = tree.path(info["patch"])
        assert patch.is_file() and info["patch"].startswith(f"{RUN_DIR}/artifacts/patches/{task_id}.attempt-1")
        assert "worktree" not in info
    assert not list((tree.root / ".rlm/local/worktrees/t").iterdir())  # merged: worktrees gone
    # the workers ran in their worktrees, and their reports reached the main tree
    assert {Path(c["cwd"]).name for c in tree.calls()} == {"a.attempt-1", "b.attempt-1"}
    assert tree.report("a").is_file() and tree.report("b").is_file()
    assert git(tree.root, "status", "--porcelain", "--", "a.txt", "src") == " M a.txt\n M src/b.py\n"
    assert schema.check("provenance", tree.provenance()) == []
    # fresh: nothing runs again, nothing merges twice
    assert tree.doit().code == 0
    assert len(tree.calls()) == 2
    assert tree.path("a.txt").read_text() == "one\ntwo\nthree\nfrom a\n"


def test_two_editors_on_the_same_lines_one_conflict_both_patches_kept(tree: Repo) -> None:
    # `owns` keeps declared editors apart; b strays into a.txt and `drift: report` lets its change through
    tree.write_command([editor("a", ["a.txt"]), editor("b", ["src/**"], drift="report")],
                       {"a": {"barrier": 2, "barrier_wait": 120, "append": {"a.txt": "A\n"}},
                        "b": {"barrier": 2, "barrier_wait": 120, "append": {"a.txt": "B\n"}}},
                       defaults={"backoff_seconds": 0, "retries": 1},
                       agent={"env": {"FAKE_AGENT_BARRIER_DIR": str(tree.root / "barrier")}})
    result = tree.doit()
    assert result.code == 1, result.out
    text = tree.path("a.txt").read_text()
    assert text in ("one\ntwo\nthree\nA\n", "one\ntwo\nthree\nB\n"), result.out  # one merged, whole
    loser = "b" if text.endswith("A\n") else "a"
    last = attempts_of(tree, loser)[-1]
    assert last["outcome"] == "conflict"
    assert last["isolation"]["conflicts"] == ["a.txt"]
    kept = tree.path(last["isolation"]["worktree"])
    assert kept.is_dir() and (kept / "a.txt").read_text().endswith(("A\n", "B\n"))
    for task_id in ("a", "b"):
        assert tree.path(f"{RUN_DIR}/artifacts/patches/{task_id}.attempt-1.patch").is_file()
    assert "conflict: a.txt" in result.out
    status = json.loads(tree.rlm("status", "--json").out)
    assert status["counts"]["conflict"] == 1
    row = next(t for t in status["tasks"] if t["id"] == loser)
    assert row["state"] == "conflict"
    assert row["detail"] == (f"conflicting: a.txt; patch: {RUN_DIR}/artifacts/patches/{loser}.attempt-1.patch; "
                             f"worktree: .rlm/local/worktrees/t/{loser}.attempt-1")
    reduced = json.loads(tree.path(f"{RUN_DIR}/reduce_state.json").read_text())
    assert [r["state"] for r in reduced["tasks"] if r["id"] == loser] == ["conflict"]
    assert reduced["counts"]["conflict"] == 1
    assert schema.check("reduce_state", reduced) == [] and schema.check("status", status) == []


def _conflicted(tree: Repo) -> tuple[str, str]:
    """Run a and b into a conflict on a.txt; (winner, loser)."""
    tree.write_command([editor("a", ["a.txt"]), editor("b", ["src/**"], drift="report")],
                       {"a": {"barrier": 2, "barrier_wait": 120, "append": {"a.txt": "A\n"}},
                        "b": {"barrier": 2, "barrier_wait": 120, "append": {"a.txt": "B\n"}}},
                       agent={"env": {"FAKE_AGENT_BARRIER_DIR": str(tree.root / "barrier")}})
    result = tree.doit()
    assert result.code == 1
    winner = "a" if tree.path("a.txt").read_text().endswith("A\n") else "b"
    loser = "b" if winner == "a" else "a"
    assert attempts_of(tree, loser)[-1]["outcome"] == "conflict", result.out  # both workers met at the barrier
    return winner, loser


def test_a_resolved_conflict_merges_on_the_next_run_without_a_worker(tree: Repo) -> None:
    _winner, loser = _conflicted(tree)
    calls = len(tree.calls())
    # the person resolves: takes back the winner's line, so the kept patch applies
    tree.path("a.txt").write_text("one\ntwo\nthree\n")
    result = tree.doit()
    assert result.code == 0, result.out
    assert len(tree.calls()) == calls, (result.out, attempts_of(tree, loser))  # no new worker: the kept change merged
    assert tree.path("a.txt").read_text() == f"one\ntwo\nthree\n{loser.upper()}\n"
    info = tree.tasks_done()[loser]["isolation"]
    assert info["merged"] is True and "worktree" not in info
    assert not tree.path(f".rlm/local/worktrees/t/{loser}.attempt-1").exists()
    assert tree.report(loser).is_file()


def test_discard_drops_the_kept_worktree_and_the_task_runs_again(tree: Repo) -> None:
    winner, loser = _conflicted(tree)
    kept = tree.path(f".rlm/local/worktrees/t/{loser}.attempt-1")
    assert kept.is_dir()
    result = tree.rlm("discard", loser)
    assert (result.code, result.err) == (0, "")
    assert result.out == (f"rlm discard: map:{loser}: removed 1 kept worktree(s) (.rlm/local/worktrees/t/"
                          f"{loser}.attempt-1); patches stay in {RUN_DIR}/artifacts/patches/; the task runs "
                          "again on the next doit\n")
    assert not kept.exists()
    assert tree.path(f"{RUN_DIR}/artifacts/patches/{loser}.attempt-1.patch").is_file()
    assert attempts_of(tree, loser)[-1]["outcome"] == "discarded"
    assert tree.rlm("discard", loser).out == f"rlm discard: map:{loser} keeps no conflicted change; nothing to do\n"
    assert tree.rlm("discard", "zz").code == 2
    # the task reruns from the current tree, which holds the winner's line: now it merges on top
    assert tree.doit().code == 0
    assert tree.path("a.txt").read_text() == f"one\ntwo\nthree\n{winner.upper()}\n{loser.upper()}\n"


def test_gate_failure_retries_with_the_failure_named_then_passes(tree: Repo) -> None:
    tree.write_command([editor("a", ["a.txt", "ok.txt"], retries=1, gate=["test -f ok.txt", ["true"]])],
                       {"a": {"append": {"a.txt": "A\n"}, "attempts": {"2": {"append": {"a.txt": "A\n",
                                                                                      "ok.txt": "ok\n"}}}}})
    result = tree.doit()
    assert result.code == 0, result.out
    log = f"{LOCAL_RUN}/gates/a.attempt-1/gate-1.log"
    assert f"retry   map:a: attempt 1, gate_failed: gate failed: test -f ok.txt exit 1 (output: {log})" in result.out
    second = tree.stdin_of(tree.records("a")[1]).decode()
    assert "## The previous attempt failed\ngate failed: test -f ok.txt exit 1" in second
    assert log in second and "test -f ok.txt" not in tree.stdin_of(tree.records("a")[0]).decode()
    assert tree.path("a.txt").read_text() == "one\ntwo\nthree\nA\n"  # only the passing attempt merged
    assert tree.path("ok.txt").read_text() == "ok\n"
    logged = [json.loads(line) for line in tree.path(f"{LOCAL_RUN}/events.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["attempt"], e["outcome"]) for e in logged if e["kind"] in ("gate", "merge")] == [
        ("gate", 1, "failed"), ("gate", 2, "passed"), ("merge", 2, "merged")]
    first = attempts_of(tree, "a")[0]
    assert first["outcome"] == "gate_failed"
    assert first["isolation"]["gate"] == {"command": "test -f ok.txt", "exit_code": 1, "log": log}
    assert tree.path(first["isolation"]["patch"]).is_file()  # the failed attempt's change is kept too


def test_the_contract_verification_is_the_default_gate(tree: Repo) -> None:
    tree.write_command([editor("a", ["a.txt"])], {"a": {"append": {"a.txt": "A\n"}}},
                       contract={"verification": {"commands": ["grep -q never a.txt"]}})
    result = tree.doit()
    assert result.code == 1
    assert "gate failed: grep -q never a.txt exit 1" in result.out
    assert tree.path("a.txt").read_text() == "one\ntwo\nthree\n"


def test_drift_outside_owns_is_refused(tree: Repo) -> None:
    tree.write_command([editor("a", ["src/**"])], {"a": {"append": {"src/b.py": "y = 2\n", "a.txt": "stray\n"}}})
    result = tree.doit()
    assert result.code == 1
    assert "FAILED  map:a: attempt 1, drift: drift: changed outside owns: a.txt (report moved to" in result.out
    assert tree.path("a.txt").read_text() == "one\ntwo\nthree\n"
    assert tree.path("src/b.py").read_text() == "x = 1\n"  # refused whole: nothing merged
    assert attempts_of(tree, "a")[-1]["isolation"]["drift"] == ["a.txt"]


def test_drift_report_merges_and_records_it(tree: Repo) -> None:
    tree.write_command([editor("a", ["src/**"], drift="report")], {"a": {"append": {"a.txt": "stray\n"}}})
    assert tree.doit().code == 0
    assert tree.path("a.txt").read_text().endswith("stray\n")
    assert tree.tasks_done()["a"]["isolation"]["drift"] == ["a.txt"]


def test_expects_changes_fails_an_empty_change(tree: Repo) -> None:
    tree.write_command([editor("a", ["a.txt"], expects_changes=True)], {})
    result = tree.doit()
    assert result.code == 1
    assert "no changes: expects_changes is set and the worktree is unchanged" in result.out


def test_a_verify_task_sees_its_dependency_merged_edit(tree: Repo) -> None:
    tree.write_command([editor("a", ["a.txt"]), editor("v", ["a.txt"], depends_on=["a"],
                                                          gate=["grep -q from-a a.txt"])],
                       {"a": {"append": {"a.txt": "from-a\n"}}})
    result = tree.doit()
    assert result.code == 0, result.out
    (call,) = tree.records("v")
    assert (Path(call["cwd"]) / "a.txt").exists() is False  # its worktree is gone after the merge
    assert tree.tasks_done()["v"]["isolation"]["changed"] == 0


def test_setup_commands_and_copy_run_in_each_worktree(tree: Repo) -> None:
    tree.write("SECRET=1\n", ".env")
    tree.write(tree.path(".gitignore").read_text() + "/.env\n", ".gitignore")
    tree.write_command([editor("a", ["a.txt"], gate=["grep -q SECRET .env", "test -f setup-ran"])],
                       {}, setup={"copy": [".env"], "commands": ["touch setup-ran"], "timeout": 30})
    assert tree.doit().code == 0
    assert not tree.path("setup-ran").exists()  # what setup made is not the attempt's change
    tree.write_command([editor("b", ["a.txt"])], {}, setup={"commands": ["exit 7"]})
    result = tree.doit()
    assert result.code == 1
    assert f"setup failed: exit 7 exit 7 (output: {LOCAL_RUN}/gates/b.attempt-1/setup-1.log)" in result.out


MANY = 600


@pytest.mark.parametrize("moment", ["staging", "journal"])
def test_sigkill_mid_merge_leaves_the_tree_before_or_after_never_half(tree: Repo, moment: str) -> None:
    """The orchestrator is SIGKILLed while it merges a change of MANY files: right after, every file is before
    or the journal says what is left; the next run finishes it. Never a tree with part of the patch."""
    for n in range(MANY):
        tree.write(f"{n}\n", f"many/{n}.txt")
    git(tree.root, "add", "-A")
    git(tree.root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "many")
    tree.write_command([editor("a", ["many/**"])], {"a": {"append": {f"many/{n}.txt": "x\n" for n in range(MANY)}}})
    run = tree.start_doit()
    journal = tree.path(".rlm/local/merge/journal.json")
    staged = tree.path(".rlm/local/merge/staged")
    watched = staged if moment == "staging" else journal
    deadline = time.monotonic() + 60
    while not watched.exists() and run.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    os.killpg(run.pid, signal.SIGKILL)
    run.finish()
    def states() -> set[str]:
        return {"after" if tree.path(f"many/{n}.txt").read_text() == f"{n}\nx\n" else
                "before" if tree.path(f"many/{n}.txt").read_text() == f"{n}\n" else "other" for n in range(MANY)}

    if moment == "journal":
        assert journal.exists(), states()  # caught inside the renames
        assert states() <= {"before", "after"}
    else:
        assert not journal.exists()
        assert states() == {"before"}  # staged files only: the tree was not touched
    # the next run finishes the merge first (the journal's renames, or the whole merge), with no new worker
    result = tree.doit()
    assert result.code == 0, result.out
    assert ("rlm: finished a merge a killed run left (.rlm/local/merge/journal.json)" in result.out) \
        is (moment == "journal")
    assert states() == {"after"}
    assert not journal.exists() and not staged.exists()
    assert len(tree.calls()) == 1
    assert tree.tasks_done()["a"]["isolation"]["merged"] is True


def test_validate_checks_setup_copy_and_the_no_shared_filesystem_rule(tree: Repo) -> None:
    tree.write_command([editor("a", ["a.txt"]), {"id": "b", "goal": "B"}],
                       setup={"copy": ["../secret", ".git/config", "ok.env"]},
                       executor={"kind": "dask", "scheduler": "tcp://127.0.0.1:1", "filesystem": "none"})
    result = tree.rlm("validate")
    assert result.code == 2
    lines = [line.split(": ", 1)[1] for line in result.err.splitlines()]
    assert "setup.copy[0]: setup.copy '../secret' escapes the repository root" in lines
    assert "setup.copy[1]: setup.copy '.git/config' is inside .git/" in lines
    assert ("tasks[1]: executor.filesystem none needs isolation: worktree on every task (in the task or in "
            "defaults:)") in lines
    assert not any("tasks[0]" in line or "ok.env" in line for line in lines)


def test_cleanup_never_touches_a_kept_worktree_or_a_patch(tree: Repo) -> None:
    _winner, loser = _conflicted(tree)
    kept = tree.path(f".rlm/local/worktrees/t/{loser}.attempt-1")
    patch = tree.path(f"{RUN_DIR}/artifacts/patches/{loser}.attempt-1.patch")
    assert tree.rlm("cleanup").code == 0
    assert kept.is_dir() and patch.is_file()
