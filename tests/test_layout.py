"""The workflow's layout: the files it names are where it names them, and reduce_state.json holds only what is the
same on every machine (its machine-local half is reduce_state.local.json), so a fresh clone agrees byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from conftest import LOCAL_RUN, RUN_DIR, Repo

REPORTS = f"{RUN_DIR}/artifacts/reports"


def edit(repo: Repo, change: Any) -> None:
    data = yaml.safe_load(repo.path("rlm.yaml").read_text())
    change(data)
    repo.write(data)


def committed(root: Path) -> dict[str, bytes]:
    """What a commit of the repository holds of rlm's files: everything under .rlm/ except .rlm/local/."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / ".rlm").rglob("*"))
            if p.is_file() and not p.relative_to(root).as_posix().startswith(".rlm/local/")}


def clone(repo: Repo) -> Path:
    """A fresh clone: rlm.yaml, the fake agent's spec and the committed .rlm/ files, nothing machine-local."""
    there = repo.root / "clone"
    there.mkdir()
    for rel, data in committed(repo.root).items():
        (there / rel).parent.mkdir(parents=True, exist_ok=True)
        (there / rel).write_bytes(data)
    shutil.copy(repo.root / "rlm.yaml", there / "rlm.yaml")
    return there


def test_the_files_the_workflow_names_are_where_it_names_them(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}])
    edit(repo, lambda d: d.update(verify=[{"id": "v", "goal": "Check a and b."}]))
    assert repo.doit().code == 0
    for rel in ("plan.json", "reduce_state.json", "deferred.json", "provenance.json",
                "artifacts/context/run_contract.md", "artifacts/reports/a.md", "artifacts/reports/v.md"):
        assert repo.path(f"{RUN_DIR}/{rel}").is_file(), rel
    assert repo.path(f"{LOCAL_RUN}/reduce_state.local.json").is_file()
    # an iteration keeps the plan before it
    edit(repo, lambda d: d.update(decision={"should_finish": False, "reason": "again"}))
    assert repo.rlm("final").code == 0
    edit(repo, lambda d: (d["tasks"][1].update(goal="B, again"), d.update(
        decision={"should_finish": True, "reason": "done", "conclusions": [
            {"text": "a holds", "evidence": [f"{REPORTS}/a.md"]}]})))
    assert repo.doit().code == 0
    assert repo.path(f"{RUN_DIR}/artifacts/plan.iter-1.json").is_file()
    assert repo.rlm("final").code == 0
    final = json.loads(repo.path(f"{RUN_DIR}/final.json").read_text())
    assert final["reduce_state_path"] == f"{RUN_DIR}/reduce_state.json"
    assert repo.path(f"{RUN_DIR}/final.md").is_file()
    archived = repo.rlm("archive")
    assert archived.code == 0, archived.out + archived.err
    assert repo.path(f"{RUN_DIR}/archived_to.json").is_file()
    [archive] = (repo.root / ".rlm" / "archive").iterdir()
    assert archive.name.startswith("t-")
    assert (archive / "meta.json").is_file() and (archive / "in_use_by").is_dir()
    inventory = repo.path(f"{RUN_DIR}/reduce_state.json").read_bytes()
    assert (archive / "run" / "reduce_state.json").read_bytes() == inventory


def test_a_no_op_in_a_fresh_clone_leaves_every_committed_byte(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "retries": 1}],
                       {"b": {"attempts": {"1": {"exit": 3}}}})
    assert repo.doit().code == 0
    assert repo.rlm("status").code == 0
    before = committed(repo.root)
    there = clone(repo)
    result = repo.doit_cli(cwd=there)
    assert result.code == 0, result.out + result.err
    assert "0 ran, 0 failed, 2 fresh" in result.out
    for verb in ("status", "reduce", "check", "wait"):
        assert repo.rlm_cli(verb, cwd=there).code == 0
    after = committed(there)
    assert after == before  # reduce_state.json included, byte for byte
    state = json.loads((there / RUN_DIR / "reduce_state.json").read_text())
    assert state["budget"]["attempts_used"] == 3 and [t["attempts"] for t in state["tasks"]] == [1, 2]


def test_status_refreshes_an_inventory_older_than_what_it_shows(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}])
    assert repo.doit().code == 0
    inventory = repo.path(f"{RUN_DIR}/reduce_state.json")
    repo.report("b").unlink()  # after the run: the inventory says fresh, the files say missing
    assert json.loads(inventory.read_text())["counts"]["missing"] == 0
    assert repo.rlm("status").lines[0] == "run t: 2 tasks: 1 fresh, 0 stale, 1 missing, 0 invalid"
    state = json.loads(inventory.read_text())
    assert (state["counts"]["fresh"], state["counts"]["missing"], state["missing"]) == (1, 1, ["b"])
    written = inventory.stat().st_mtime_ns
    assert repo.rlm("status").code == 0  # nothing changed since: not written again
    assert inventory.stat().st_mtime_ns == written
