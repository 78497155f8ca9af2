"""Every file the tool writes gets the user's umask (atomic writes go through mkstemp, which alone gives 0600)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Repo, subprocess_env


def run_with_umask(mask: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120, preexec_fn=lambda: os.umask(mask))


def modes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith((".lock", ".log"))}


@pytest.mark.parametrize(("mask", "mode"), [(0o022, "0o644"), (0o027, "0o640")])
@pytest.mark.slow
def test_written_files_follow_the_umask(repo: Repo, mask: int, mode: str) -> None:
    root = repo.root / "work"
    root.mkdir()
    assert run_with_umask(mask, ["rlm_tasks", "init", "--run-id", "first-run"], root).returncode == 0
    done = run_with_umask(mask, ["doit"], root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_with_umask(mask, ["rlm_tasks", "final"], root).returncode == 1  # refused: no decision yet
    written = modes(root)
    for rel in ("rlm.yaml", ".rlm/rlm.schema.json", ".rlm/runs/first-run/plan.json",
                ".rlm/runs/first-run/provenance.json", ".rlm/runs/first-run/deferred.json",
                ".rlm/runs/first-run/artifacts/context/run_contract.md",
                ".rlm/runs/first-run/artifacts/prompts/inventory.md",
                ".rlm/runs/first-run/reduce_state.json", ".rlm/local/runs/first-run/inflight.json"):
        assert written.pop(rel) == mode, rel
    assert set(written.values()) == {mode}, written  # and every other file too

    homes = repo.root / "homes"
    installed = run_with_umask(mask, ["rlm_tasks", "skills", "install", "--codex-home", str(homes / "codex"),
                                      "--claude-dir", str(homes / "claude")], root)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    skills = modes(homes)
    assert len(skills) == 8 and set(skills.values()) == {mode}, skills


@pytest.mark.slow
def test_an_archive_is_read_only_and_no_more_readable_than_the_umask(repo: Repo) -> None:
    root = repo.root / "work"
    root.mkdir()
    assert run_with_umask(0o077, ["rlm_tasks", "init", "--run-id", "first-run"], root).returncode == 0
    config = root / "rlm.yaml"
    config.write_text(config.read_text() + "decision: {should_finish: true, reason: done, conclusions: []}\n")
    assert run_with_umask(0o077, ["doit"], root).returncode == 0
    assert run_with_umask(0o077, ["rlm_tasks", "final"], root).returncode == 0
    archived = run_with_umask(0o077, ["rlm_tasks", "archive"], root)
    assert archived.returncode == 0, archived.stdout + archived.stderr
    [archive] = (root / ".rlm/archive").iterdir()
    files = {oct(stat.S_IMODE(p.stat().st_mode)) for p in (archive / "run").rglob("*") if p.is_file()}
    dirs = {oct(stat.S_IMODE(p.stat().st_mode)) for p in (archive / "run").rglob("*") if p.is_dir()}
    assert (files, dirs) == ({"0o400"}, {"0o500"})  # it was 0o444 / 0o555 whatever the umask
    assert oct(stat.S_IMODE((archive / "meta.json").stat().st_mode)) == "0o400"
