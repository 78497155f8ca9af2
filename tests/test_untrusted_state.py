"""Files under .rlm/ are worker-writable: what rlm reads from them is checked before use, and no value read from
one reaches another program as an option (git after --end-of-options, commit ids checked for their shape)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import LOCAL_RUN, Repo

from rlm_tasks import gitcmd


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                   cwd=root, check=True, capture_output=True)


@pytest.fixture
def git_repo(repo: Repo) -> Repo:
    git(repo.root, "init", "-q")
    (repo.root / "README.md").write_text("v1\n")
    repo.write_command([{"id": "a", "goal": "g"}])
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "start")
    return repo


@pytest.mark.hand_made_state  # a hostile drift baseline, on purpose
@pytest.mark.parametrize("head", ["--output={outside}", "-o{outside}", "HEAD --output={outside}",
                                  "--no-index", "0" * 39, "G" * 40, 7, ["x"]])
def test_a_hostile_drift_baseline_never_reaches_git_as_an_option(git_repo: Repo, tmp_path: Path,
                                                                  head: object) -> None:
    repo = git_repo
    assert repo.doit_cli().code == 0
    baseline = repo.path(f"{LOCAL_RUN}/drift_baseline.json")
    data = json.loads(baseline.read_text())
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    data["head"] = head.format(outside=outside) if isinstance(head, str) else head
    baseline.write_text(json.dumps(data))
    (repo.root / "README.md").write_text("changed during the run\n")
    for verb in (("reduce",), ("status",), ("status", "--json")):
        result = repo.rlm_cli(*verb)
        assert "Traceback" not in result.err, result
        assert not outside.exists(), verb
    state = json.loads(repo.path(f"{LOCAL_RUN}/reduce_state.local.json").read_text())  # drift: machine-local
    drift = state["drift"]
    assert "drift_baseline.json" in drift["note"] and "not used" in drift["note"], drift
    assert "README.md" in drift["unowned"]  # compared with HEAD instead
    assert not outside.exists()


@pytest.mark.parametrize("dirty", ["../outside.txt", "/etc/passwd", "a/../../x", ""])
def test_a_baseline_naming_paths_outside_is_not_used(git_repo: Repo, dirty: str) -> None:
    repo = git_repo
    assert repo.doit_cli().code == 0
    baseline = repo.path(f"{LOCAL_RUN}/drift_baseline.json")
    data = json.loads(baseline.read_text())
    data["dirty"] = {dirty: None}
    baseline.write_text(json.dumps(data))
    result = repo.rlm_cli("reduce")
    assert result.code == 0, result
    assert "Traceback" not in result.err


@pytest.mark.parametrize("value", ["--output=/tmp/x", "HEAD~1", "abc", "0" * 40 + "\n", "-" + "0" * 39])
def test_revisions_are_checked_for_their_shape(value: str) -> None:
    assert not gitcmd.is_object_id(value)
    with pytest.raises(gitcmd.UnsafeRevision) as caught:
        gitcmd.object_id(value, "drift_baseline.json: head")
    assert str(caught.value).startswith("drift_baseline.json: head: ")
    assert str(caught.value).endswith("is not a commit id (40 or 64 hexadecimal digits); not passed to git")


def test_git_sees_revisions_after_end_of_options(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    git(tmp_path, "add", "f")
    git(tmp_path, "commit", "-qm", "x")
    head = gitcmd.head(tmp_path)
    assert gitcmd.is_object_id(head)
    assert gitcmd.output(tmp_path, "diff", "--name-only", revisions=(str(head),), paths=()) == b""
    with pytest.raises(gitcmd.UnsafeRevision):
        gitcmd.output(tmp_path, "diff", revisions=("--output=x",))
