"""Worktree, patch, drift and the merge queue on real git repositories (no rlm run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from rlm_tasks import gitsafe
from rlm_tasks.config import schema
from rlm_tasks.run.isolation import merge, worktree


def _git(root: Path, *args: str) -> str:
    return gitsafe.out(root, list(args))


@pytest.fixture
def main_tree(tmp_path: Path) -> Path:
    root = tmp_path / "main"
    root.mkdir()
    _git(root, "init", "-q")
    (root / ".gitignore").write_text("/.rlm/local/\n")
    (root / "a.txt").write_text("one\ntwo\nthree\n")
    (root / "src").mkdir()
    (root / "src" / "b.py").write_text("x = 1\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "base")
    return root


def _attempt(root: Path, name: str, edit: dict[str, str | None]) -> tuple[str, str, Path]:
    base = worktree.snapshot(root)
    tree = root / ".rlm/local/worktrees/t" / name
    worktree.add(root, tree, base)
    for rel, text in edit.items():
        if text is None:
            (tree / rel).unlink()
        else:
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text)
    return base, worktree.result(tree, base, ".rlm/runs/t/artifacts/reports/x.md"), tree


def test_snapshot_holds_uncommitted_and_untracked_files_and_leaves_index_and_head(main_tree: Path) -> None:
    head = worktree.head(main_tree)
    (main_tree / "a.txt").write_text("edited\n")
    (main_tree / "new.txt").write_text("new\n")
    (main_tree / ".rlm/local").mkdir(parents=True)
    (main_tree / ".rlm/local/x").write_text("local\n")
    snap = worktree.snapshot(main_tree)
    assert _git(main_tree, "show", f"{snap}:a.txt") == "edited"
    assert _git(main_tree, "show", f"{snap}:new.txt") == "new"
    assert subprocess.run(["git", "cat-file", "-e", f"{snap}:.rlm/local/x"], cwd=main_tree).returncode != 0
    assert worktree.head(main_tree) == head
    assert _git(main_tree, "status", "--porcelain") == " M a.txt\n?? new.txt"


def test_disjoint_patches_both_merge(main_tree: Path) -> None:
    b1, r1, _ = _attempt(main_tree, "one", {"a.txt": "ONE\ntwo\nthree\n"})
    b2, r2, _ = _attempt(main_tree, "two", {"src/b.py": "x = 2\n", "src/new.py": "y = 1\n"})
    assert merge.merge(main_tree, b1, r1) == merge.Merged(True, ("a.txt",))
    assert merge.merge(main_tree, b2, r2).ok
    assert (main_tree / "a.txt").read_text() == "ONE\ntwo\nthree\n"
    assert (main_tree / "src/b.py").read_text() == "x = 2\n"
    assert (main_tree / "src/new.py").read_text() == "y = 1\n"
    assert not merge.pending(main_tree)


def test_conflict_leaves_the_tree_untouched(main_tree: Path) -> None:
    b1, r1, _ = _attempt(main_tree, "one", {"a.txt": "one\nTWO\nthree\n", "src/b.py": "x = 3\n"})
    b2, r2, _ = _attempt(main_tree, "two", {"a.txt": "one\n2\nthree\n", "c.txt": "c\n"})
    assert merge.merge(main_tree, b1, r1).ok
    before = {p: p.read_bytes() for p in main_tree.rglob("*") if p.is_file() and ".git" not in p.parts}
    found = merge.merge(main_tree, b2, r2)
    assert found == merge.Merged(False, (), ("a.txt",), "conflict: a.txt")
    after = {p: p.read_bytes() for p in main_tree.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert after == before


def test_deletion_mode_and_symlink_merge(main_tree: Path) -> None:
    base, result, tree = _attempt(main_tree, "one", {"src/b.py": None, "run.sh": "#!/bin/sh\n"})
    (tree / "run.sh").chmod(0o755)
    (tree / "link").symlink_to("a.txt")
    result = worktree.result(tree, base, "r.md")
    assert merge.merge(main_tree, base, result).ok
    assert not (main_tree / "src").exists()
    assert (main_tree / "run.sh").stat().st_mode & 0o111
    assert (main_tree / "link").readlink() == Path("a.txt")


def test_change_already_in_the_tree_is_a_clean_no_op(main_tree: Path) -> None:
    base, result, _ = _attempt(main_tree, "one", {"a.txt": "same\n"})
    (main_tree / "a.txt").write_text("same\n")
    assert merge.merge(main_tree, base, result) == merge.Merged(True)


def test_an_untracked_ignored_file_is_never_overwritten(main_tree: Path) -> None:
    base, result, _ = _attempt(main_tree, "one", {"build/out.txt": "new\n"})
    (main_tree / ".gitignore").write_text("/.rlm/local/\n/build/\n")
    (main_tree / "build").mkdir()
    (main_tree / "build/out.txt").write_text("mine\n")
    found = merge.merge(main_tree, base, result)
    assert not found.ok and found.conflicts == ("build/out.txt",)
    assert (main_tree / "build/out.txt").read_text() == "mine\n"


def test_recover_finishes_a_journaled_merge(main_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, result, _ = _attempt(main_tree, "one", {"a.txt": "A\n", "src/b.py": "x = 9\n", "d/e.txt": "e\n"})
    calls = []
    real = merge.os.replace

    def dies_after_one(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a SIGKILL between two renames would stop it
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(merge.os, "replace", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        merge.merge(main_tree, base, result)
    monkeypatch.setattr(merge.os, "replace", real)
    assert merge.pending(main_tree)
    assert merge.recover(main_tree)
    assert (main_tree / "a.txt").read_text() == "A\n"
    assert (main_tree / "src/b.py").read_text() == "x = 9\n"
    assert (main_tree / "d/e.txt").read_text() == "e\n"
    assert not merge.pending(main_tree) and not (main_tree / merge.STAGED_DIR).exists()


def test_patch_and_drift(main_tree: Path) -> None:
    base, result, _ = _attempt(main_tree, "one", {"src/b.py": "x = 5\n", "a.txt": "drift\n"})
    changed = [c.path for c in worktree.changes(main_tree, base, result)]
    assert changed == ["a.txt", "src/b.py"]
    assert worktree.drift(changed, ["src/**"]) == ["a.txt"]
    assert worktree.drift(changed, ["src", "a.txt"]) == []
    text = worktree.patch(main_tree, base, result)
    assert b"+x = 5" in text and b"+drift" in text


def test_object_ids_are_checked() -> None:
    with pytest.raises(gitsafe.GitError, match="not a git object id: '--output=x'"):
        gitsafe.oid("--output=x")


def test_the_journal_follows_its_schema(main_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, result, _ = _attempt(main_tree, "one", {"a.txt": "A\n", "src/b.py": None})
    seen = []
    real = merge._apply

    def look(root: Path, journal: dict[str, object]) -> None:
        seen.append(json.loads((root / merge.JOURNAL).read_text()))
        real(root, journal)

    monkeypatch.setattr(merge, "_apply", look)
    assert merge.merge(main_tree, base, result).ok
    (journal,) = seen
    assert schema.check("merge_journal", journal) == []
    assert [s["path"] for s in journal["steps"]] == ["src/b.py", "a.txt"]  # deletions first
    assert journal["steps"][0]["staged"] is None


@pytest.mark.parametrize("journal", [
    {"version": 1, "tree": "0" * 40, "steps": [{"path": "../outside", "staged": None}]},
    {"version": 1, "tree": "0" * 40, "steps": [{"path": "a.txt", "staged": "/etc/passwd"}]},
    {"version": 1, "tree": "0" * 40, "steps": [{"path": ".git/config", "staged": None}]},
    {"version": 2},
    "not a journal",
])
def test_a_damaged_journal_is_one_clear_error_and_touches_nothing(main_tree: Path, journal: object) -> None:
    (main_tree / merge.MERGE_DIR).mkdir(parents=True)
    (main_tree / merge.JOURNAL).write_text(json.dumps(journal))
    with pytest.raises(merge.MergeError, match=r"^\.rlm/local/merge/journal\.json is damaged; nothing was applied"):
        merge.recover(main_tree)
    assert (main_tree / "a.txt").read_text() == "one\ntwo\nthree\n"
    assert (main_tree / merge.JOURNAL).exists()


def test_staged_files_without_a_journal_are_dropped(main_tree: Path) -> None:
    (main_tree / merge.STAGED_DIR).mkdir(parents=True)
    (main_tree / merge.STAGED_DIR / "0").write_text("half\n")
    assert merge.recover(main_tree) is False
    assert not (main_tree / merge.STAGED_DIR).exists()
    assert (main_tree / "a.txt").read_text() == "one\ntwo\nthree\n"


def test_ctrl_c_waits_until_every_file_is_in_place(main_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, result, _ = _attempt(main_tree, "one", {"a.txt": "A\n", "src/b.py": "x = 9\n"})
    real = merge.os.replace
    calls = []

    def interrupted_midway(src: object, dst: object) -> None:
        if str(dst).endswith(merge.JOURNAL):
            real(src, dst)  # type: ignore[arg-type]
            return
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # held: Python raises KeyboardInterrupt only after the renames
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(merge.os, "replace", interrupted_midway)
    other = threading.Event()  # another thread of the process, which the kernel may hand the signal to
    helper = threading.Thread(target=other.wait, daemon=True)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            merge.merge(main_tree, base, result)
    finally:
        other.set()
        helper.join()
    assert len(calls) == 2
    assert (main_tree / "a.txt").read_text() == "A\n" and (main_tree / "src/b.py").read_text() == "x = 9\n"
    assert not merge.pending(main_tree)
