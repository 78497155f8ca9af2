"""Provenance is the source of truth: each freshness reason, recorded digests, what a change reaches."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import yaml
from conftest import RUN_DIR, Repo

from rlm_tasks.config import schema

REPORTS = f"{RUN_DIR}/artifacts/reports"
FRESH: tuple[str, list[str]] = ("fresh", [])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tasks() -> list[dict[str, Any]]:
    return [
        {"id": "a", "goal": "Read the a files.", "inputs": ["src/a.txt"], "watch": ["docs/*.md"]},
        {"id": "b", "goal": "Build on a.", "depends_on": ["a"], "compute_tier": "heavy"},
        {"id": "c", "goal": "Stand alone."},
    ]


def states(repo: Repo) -> dict[str, tuple[str, list[str]]]:
    result = repo.rlm("status", "--json")
    assert (result.code, result.err) == (0, "")
    return {t["id"]: (t["state"], t["reasons"]) for t in json.loads(result.out)["tasks"]}


def edit_config(repo: Repo, change: Any) -> None:
    data = yaml.safe_load((repo.root / "rlm.yaml").read_text())
    change(data)
    repo.write(data)


@pytest.fixture
def done(repo: Repo) -> Repo:
    """A finished run: a, b (depends on a, heavy tier), c; every report fresh."""
    (repo.root / "src").mkdir()
    (repo.root / "src" / "a.txt").write_text("alpha\n")
    (repo.root / "docs").mkdir()
    (repo.root / "docs" / "x.md").write_text("# watched\n")
    repo.write_codex(tasks(), contract={"invariants": ["Stay read-only."]})
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    assert repo.ran() == ["a", "b", "c"]
    assert states(repo) == {"a": FRESH, "b": FRESH, "c": FRESH}
    return repo


@pytest.mark.slow
def test_provenance_records_the_digests_taken_before_the_worker_started(done: Repo) -> None:
    data = done.provenance()
    assert schema.check("provenance", data) == []
    contract = done.path(f"{RUN_DIR}/artifacts/context/run_contract.md").read_bytes()
    for task_id in ("a", "b", "c"):
        entry = data["tasks"][task_id]
        assert entry["digests"]["prompt"] == sha(done.path(f"{RUN_DIR}/artifacts/prompts/{task_id}.md").read_bytes())
        assert entry["digests"]["contract"] == sha(contract)
        assert entry["report_sha256"] == sha(done.report(task_id).read_bytes())
        assert entry["report_path"] == f"{REPORTS}/{task_id}.md"
    a, b = data["tasks"]["a"], data["tasks"]["b"]
    assert a["digests"]["inputs"] == {"docs/x.md": sha(b"# watched\n"), "src/a.txt": sha(b"alpha\n")}
    assert b["digests"]["inputs"] == {f"{REPORTS}/a.md": sha(done.report("a").read_bytes())}
    assert (b["model"], b["effort"], b["compute_tier"]) == ("gpt-5.2-codex", "xhigh", "heavy")
    assert b["digests"]["agent"] != a["digests"]["agent"]  # heavy vs standard tier


@pytest.mark.slow
def test_prompt_changed_when_a_task_goal_is_edited(done: Repo) -> None:
    edit_config(done, lambda d: d["tasks"][0].update(goal="Read the a files again."))
    found = states(done)
    assert found["a"] == ("stale", ["prompt_changed"])
    assert found["c"] == FRESH


@pytest.mark.slow
def test_run_goal_reaches_every_prompt_and_the_contract(done: Repo) -> None:
    edit_config(done, lambda d: d.update(goal="A different run goal."))
    assert states(done) == {"a": ("stale", ["prompt_changed", "contract_changed"]),
                            "b": ("stale", ["prompt_changed", "contract_changed", "upstream_stale"]),
                            "c": ("stale", ["prompt_changed", "contract_changed"])}


@pytest.mark.slow
def test_contract_changed_when_an_invariant_is_edited(done: Repo) -> None:
    edit_config(done, lambda d: d["contract"]["invariants"].append("Never push."))
    assert states(done) == {"a": ("stale", ["contract_changed"]),
                            "b": ("stale", ["contract_changed", "upstream_stale"]),
                            "c": ("stale", ["contract_changed"])}


@pytest.mark.slow
def test_agent_changed_when_the_tier_model_is_edited(done: Repo) -> None:
    edit_config(done, lambda d: d.update(tiers={"heavy": {"model": "gpt-6-codex"}}))
    assert states(done) == {"a": FRESH, "b": ("stale", ["agent_changed"]), "c": FRESH}


@pytest.mark.slow
def test_agent_changed_when_the_tier_effort_or_the_agent_args_change(done: Repo) -> None:
    edit_config(done, lambda d: d.update(tiers={"standard": {"model": "gpt-5.1-codex-mini", "effort": "high"}}))
    # b's own files are fresh, but it reads a's report, which is about to change: make -q says stale
    assert states(done) == {"a": ("stale", ["agent_changed"]), "b": ("stale", ["upstream_stale"]),
                            "c": ("stale", ["agent_changed"])}
    edit_config(done, lambda d: d["agent"].update(args=["--json"]))
    assert {t: s[0] for t, s in states(done).items()} == {"a": "stale", "b": "stale", "c": "stale"}
    assert states(done)["b"] == ("stale", ["agent_changed", "upstream_stale"])


@pytest.mark.slow
def test_agent_env_values_and_the_timeout_are_not_part_of_the_invocation(done: Repo) -> None:
    """Machine-specific settings (a log path, a timeout) must not make a cloned run stale."""
    edit_config(done, lambda d: d["agent"].update(timeout=99, env={**d["agent"]["env"], "FAKE_AGENT_MODE": "empty"}))
    assert states(done) == {"a": FRESH, "b": FRESH, "c": FRESH}


@pytest.mark.slow
def test_input_changed_when_an_inputs_file_is_edited_or_removed(done: Repo) -> None:
    (done.root / "src" / "a.txt").write_text("alpha, edited\n")
    assert states(done) == {"a": ("stale", ["input_changed"]), "b": ("stale", ["upstream_stale"]), "c": FRESH}
    (done.root / "src" / "a.txt").unlink()
    assert states(done)["a"] == ("stale", ["input_changed"])


@pytest.mark.slow
def test_input_changed_when_a_dependency_report_changes(done: Repo) -> None:
    report = done.report("a")
    report.write_text(report.read_text() + "\nA note added by hand.\n")
    assert states(done) == {"a": ("stale", ["report_changed"]), "b": ("stale", ["input_changed", "upstream_stale"]),
                            "c": FRESH}


@pytest.mark.slow
def test_input_changed_when_a_watched_file_is_edited_or_added(done: Repo) -> None:
    (done.root / "docs" / "x.md").write_text("# watched, edited\n")
    assert states(done) == {"a": ("stale", ["input_changed"]), "b": ("stale", ["upstream_stale"]), "c": FRESH}
    (done.root / "docs" / "x.md").write_text("# watched\n")
    assert states(done)["a"] == FRESH
    (done.root / "docs" / "notes.txt").write_text("not matched by docs/*.md\n")
    assert states(done)["a"] == FRESH
    (done.root / "docs" / "new.md").write_text("# new\n")
    assert states(done)["a"] == ("stale", ["input_changed"])


@pytest.mark.slow
def test_report_changed_when_a_report_is_edited_by_hand(done: Repo) -> None:
    report = done.report("c")
    report.write_text(report.read_text().replace("## Evidence", "## Evidence\n- invented by hand"))
    assert states(done) == {"a": FRESH, "b": FRESH, "c": ("stale", ["report_changed"])}


@pytest.mark.slow
def test_missing_when_the_report_is_gone(done: Repo) -> None:
    done.report("c").unlink()
    assert states(done)["c"] == ("missing", [])


@pytest.mark.slow
def test_invalid_when_the_report_lacks_a_required_section_or_is_empty(done: Repo) -> None:
    done.report("c").write_text("# c\n\n## What I did\nThings.\n")
    result = json.loads(done.rlm("status", "--json").out)
    [c] = [t for t in result["tasks"] if t["id"] == "c"]
    assert (c["state"], c["reasons"], c["detail"]) == ("invalid", [],
                                                       "report lacks required section 'Contract Compliance'")
    done.report("c").write_text("  \n")
    [c] = [t for t in json.loads(done.rlm("status", "--json").out)["tasks"] if t["id"] == "c"]
    assert (c["state"], c["detail"]) == ("invalid", "report is empty")


@pytest.mark.slow
def test_a_section_inside_a_code_fence_does_not_count(done: Repo) -> None:
    done.report("c").write_text("# c\n\n```\n## Contract Compliance\n```\n")
    assert states(done)["c"][0] == "invalid"


@pytest.mark.slow
def test_a_report_without_provenance_is_never_fresh(repo: Repo) -> None:
    """A report left by a crashed worker (no completion marker) is not taken as done."""
    repo.write_codex([{"id": "a", "goal": "A"}])
    repo.report("a").parent.mkdir(parents=True)
    repo.report("a").write_text("# a\n\n## Contract Compliance\n- looks done\n")
    assert states(repo) == {"a": ("stale", ["no_provenance"])}
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    assert repo.ran() == ["a"]
    assert states(repo) == {"a": FRESH}


@pytest.mark.slow
def test_after_a_rerun_every_report_is_fresh_again(done: Repo) -> None:
    edit_config(done, lambda d: d["contract"]["invariants"].append("Never push."))
    (done.root / "src" / "a.txt").write_text("alpha, edited\n")
    result = done.doit()
    assert result.code == 0, result.out + result.err
    assert done.ran() == ["a", "a", "b", "b", "c", "c"]
    assert states(done) == {"a": FRESH, "b": FRESH, "c": FRESH}


def test_input_digests_are_taken_before_the_worker_starts(repo: Repo) -> None:
    """A worker that changes a declared input leaves its report stale: it worked from the old content."""
    (repo.root / "src").mkdir()
    (repo.root / "src" / "a.txt").write_text("alpha\n")
    repo.write_command([{"id": "a", "goal": "A", "inputs": ["src/a.txt"]}],
                       {"a": {"append": {"src/a.txt": "changed by the worker\n"}}})
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    assert repo.provenance()["tasks"]["a"]["digests"]["inputs"] == {"src/a.txt": sha(b"alpha\n")}
    assert states(repo) == {"a": ("stale", ["input_changed"])}
