"""The whole loop in a tmp repo: MAP → REDUCE → VERIFY → DECIDE, with a scripted worker."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LOCAL_RUN, RUN_DIR, Repo

from rlm_tasks.cli.main import main
from rlm_tasks.config import schema

RUN = RUN_DIR
LOCAL = LOCAL_RUN
SECTIONS = "## What I did\nx\n\n## Key findings\n- y\n\n"
COMPLIANCE = "\n## Contract Compliance\n- kept\n"
# the report of a worker without a script of its own: every section, no deferred opportunity
DEFAULT_REPORT = ("# {worker_id}\n\n## What I did\nRead.\n\n## Key findings\n- ok\n\n## Evidence\n- none\n\n"
                  "## Open questions / risks\n- none\n\n## Deferred opportunities\nNone identified.\n\n"
                  "## Contract Compliance\n- kept\n")
SCRIPTS = {
    "bullets": "# bullets\n" + SECTIONS + "## Deferred opportunities\n"
    "- Proposal: cache digests. Why deferred: no benchmark yet. How to validate: bench/noop.py\n"
    "- **Proposal:** split config.py\n"
    "  - Why deferred: out of scope\n" + COMPLIANCE,
    "numbered": "# numbered\n" + SECTIONS + "### Deferred Opportunities:\n"
    "1. Rewrite the parser.\n2) Add fuzzing; How to validate: atheris finds nothing in 1h\n" + COMPLIANCE,
    "nothing": "# nothing\n" + SECTIONS + "## Deferred opportunities\nNone identified.\n" + COMPLIANCE,
    "nosection": "# nosection\n" + SECTIONS + COMPLIANCE,
}
SPEC: dict[str, Any] = {"*": {"text": DEFAULT_REPORT}, **{w: {"text": text} for w, text in SCRIPTS.items()}}


@pytest.fixture
def loop(repo: Repo) -> Repo:
    """Four map tasks whose workers write scripted reports, two at a time."""
    repo.write_command([
        {"id": "bullets", "goal": "Report with bullet items."},
        {"id": "numbered", "goal": "Report with numbered items."},
        {"id": "nothing", "goal": "Report with none identified."},
        {"id": "nosection", "goal": "Report without the heading."},
    ], SPEC, goal="Exercise the loop.", budget={"max_inflight": 2})
    return repo


def write_config(repo: Repo, config: dict[str, Any]) -> None:
    repo.write(config)


def config(repo: Repo) -> dict[str, Any]:
    return dict(yaml.safe_load((repo.root / "rlm.yaml").read_text()))


def load(path: str) -> Any:
    return json.loads(Path(path).read_text())


@pytest.mark.slow
def test_reduce_state_field_by_field(loop: Repo) -> None:
    assert loop.doit().code == 0
    state = load(f"{RUN}/reduce_state.json")
    assert schema.check("reduce_state", state) == []
    assert state["run_id"] == "t"
    assert state["iteration"] == 1
    assert state["total"] == 4
    assert state["counts"] == {"fresh": 4, "stale": 0, "missing": 0, "invalid": 0, "failed": 0, "running": 0,
                               "interrupted": 0, "partial": 0, "conflict": 0}
    assert state["missing"] == []
    assert state["local_path"] == f"{LOCAL}/reduce_state.local.json"
    local = load(state["local_path"])  # what is true on this machine only
    assert schema.check("reduce_state_local", local) == []
    assert local["stalled"] == [] and local["running"] == []
    rows = {r["id"]: r for r in state["tasks"]}
    bullets = rows["bullets"]
    report = loop.root / f"{RUN}/artifacts/reports/bullets.md"
    assert bullets["state"] == "fresh"
    assert bullets["report_path"] == f"{RUN}/artifacts/reports/bullets.md"
    assert bullets["report_bytes"] == report.stat().st_size
    assert 0 <= local["age_seconds"]["bullets"] < 60
    assert bullets["attempts"] == 1
    assert bullets["contract_compliance"] is True
    assert bullets["log_path"] == f"{LOCAL}/logs/bullets.attempt-1.log"
    assert local["drift"]["checked"] is False  # the tmp repo is not a git work tree
    assert local["drift"]["note"] == "not a git working tree: drift not checked"
    assert "drift" not in state and "age_seconds" not in bullets and "generated_at" not in state
    # an inventory, never report text
    assert "cache digests" not in (loop.root / f"{RUN}/reduce_state.json").read_text()


@pytest.mark.slow
def test_failed_and_missing_states(loop: Repo) -> None:
    loop.agent_spec({**SPEC, "numbered": {"exit": 1, "report": "none"}})
    assert loop.doit().code == 1
    assert main(["reduce"]) == 0  # the CLI verb writes the same file
    state = load(f"{RUN}/reduce_state.json")
    rows = {r["id"]: r for r in state["tasks"]}
    assert rows["numbered"]["state"] == "failed"
    assert rows["numbered"]["report_bytes"] is None
    assert state["missing"] == ["numbered"]
    assert state["counts"]["failed"] == 1 and state["counts"]["fresh"] == 3


@pytest.mark.slow
def test_deferred_formats(loop: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert loop.doit().code == 0
    data = load(f"{RUN}/deferred.json")
    assert schema.check("deferred", data) == []
    bullets = f"{RUN}/artifacts/reports/bullets.md"
    numbered = f"{RUN}/artifacts/reports/numbered.md"
    assert data["items"] == [
        {
            "proposal": "cache digests",
            "why_deferred": "no benchmark yet",
            "how_to_validate": "bench/noop.py",
            "source": {"report_path": bullets, "line": 9},
        },
        {
            "proposal": "split config.py",
            "why_deferred": "out of scope",
            "how_to_validate": None,
            "source": {"report_path": bullets, "line": 10},
        },
        {
            "proposal": "Rewrite the parser",
            "why_deferred": None,
            "how_to_validate": None,
            "source": {"report_path": numbered, "line": 9},
        },
        {
            "proposal": "Add fuzzing",
            "why_deferred": None,
            "how_to_validate": "atheris finds nothing in 1h",
            "source": {"report_path": numbered, "line": 10},
        },
    ]
    assert data["reports_without_section"] == [f"{RUN}/artifacts/reports/nosection.md"]
    assert data["reports_read"] == 4
    capsys.readouterr()
    assert main(["deferred"]) == 0
    assert capsys.readouterr().out == (
        f"deferred: 4 opportunities from 4 reports, 1 without the section: {RUN}/deferred.json\n"
    )


@pytest.mark.slow
def test_final_refused_without_verify_then_accepted(loop: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(loop)
    cfg["decision"] = decision = {
        "should_finish": True,
        "reason": "answered",
        "conclusions": [{"text": "bullets found two ideas", "evidence": [f"{RUN}/artifacts/reports/bullets.md"]}],
    }
    del cfg["decision"]  # DECIDE cites reports, so it is written once they exist
    write_config(loop, cfg)
    assert loop.doit().code == 0
    cfg["decision"] = decision
    write_config(loop, cfg)
    capsys.readouterr()
    assert main(["final"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "rlm: final refused: VERIFY is mandatory: the plan has no verify task; add one under 'verify:' and run doit\n"
    )
    assert not (loop.root / f"{RUN}/final.json").exists()
    assert not (loop.root / f"{RUN}/final.md").exists()

    # adding the verify task the skill asks for is an edit inside iteration 1; before it ran, final is refused
    cfg["verify"] = [{"id": "check", "goal": "Check the bullets report.", "depends_on": ["bullets"]}]
    write_config(loop, cfg)
    assert main(["final"]) == 1
    assert "verify report of verify:check is missing: run doit first" in capsys.readouterr().err
    assert loop.doit().code == 0
    plan = load(f"{RUN}/plan.json")
    assert plan["iteration"] == 1
    assert plan["changed_since_last_iteration"] == {
        "added": ["bullets", "check", "nosection", "nothing", "numbered"], "removed": [], "edited": []}
    assert not (loop.root / f"{RUN}/artifacts/plan.iter-1.json").exists()
    assert schema.check("plan", plan) == []

    capsys.readouterr()
    assert loop.doit("final").code == 0
    final = load(f"{RUN}/final.json")
    assert schema.check("final", final) == []
    assert final["termination_decision"] == {
        "should_finish": True,
        "reason": "answered",
        "budget_exhausted": None,
        "terminal": True,
        "budget_used": {"iterations": 1, "workers": 5, "attempts": 5, "tokens": 0, "cost_usd": 0.0},
    }
    assert final["conclusions"] == [
        {"text": "bullets found two ideas", "evidence": [f"{RUN}/artifacts/reports/bullets.md"]}
    ]
    assert final["evidence_paths"] == [
        f"{RUN}/artifacts/reports/{i}.md" for i in ("bullets", "numbered", "nothing", "nosection", "check")
    ]
    assert [d["proposal"] for d in final["deferred_opportunities"]] == [
        "cache digests",
        "split config.py",
        "Rewrite the parser",
        "Add fuzzing",
    ]
    assert final["reduce_state_path"] == f"{RUN}/reduce_state.json"
    assert final["deferred_path"] == f"{RUN}/deferred.json"

    md = (loop.root / f"{RUN}/final.md").read_text()
    blocks = re.findall(r"```mermaid\n(.*?)\n```", md, re.S)
    assert len(blocks) == 2
    dag, gantt = blocks
    dag_lines = dag.splitlines()
    assert dag_lines[0] == "graph TD"
    assert '  g0["map:bullets<br/>fresh"]:::fresh' in dag_lines
    assert '  g4["verify:check<br/>fresh"]:::fresh' in dag_lines
    assert "  g0 --> g4" in dag_lines
    for line in dag_lines[1:]:
        assert re.fullmatch(r'  (g\d+\["[^"]+"\]:::\w+|g\d+ --> g\d+|classDef \w+ [\w:#,]+)', line), line
    gantt_lines = gantt.splitlines()
    assert gantt_lines[:2] == ["gantt", "  title Worker timeline (UTC)"]
    assert "  section map" in gantt_lines and "  section verify" in gantt_lines
    tasks = [line for line in gantt_lines if ":done," in line]
    assert len(tasks) == 5
    for line in tasks:
        assert re.fullmatch(r"  [\w.-]+ \d+ ok :done, b\d+, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d, \d+s", line), line
    assert "\n- cache digests" in md.split("## Deferred opportunities")[1]


@pytest.mark.slow
def test_final_deferred_none_identified(loop: Repo) -> None:
    cfg = config(loop)
    cfg["tasks"] = [{"id": "nothing", "goal": "g"}]
    cfg["verify"] = [{"id": "check", "goal": "v", "depends_on": ["nothing"]}]
    cfg["decision"] = {"should_finish": False, "reason": "needs another pass"}
    write_config(loop, cfg)
    assert loop.doit().code == 0
    assert main(["final"]) == 0
    final = load(f"{RUN}/final.json")
    assert final["deferred_opportunities"] == "none identified"
    assert final["termination_decision"]["should_finish"] is False
    assert "## Deferred opportunities\nnone identified\n" in (loop.root / f"{RUN}/final.md").read_text()


@pytest.mark.slow
def test_final_refuses_missing_evidence_and_missing_decision(loop: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(loop)
    cfg["tasks"] = [{"id": "nothing", "goal": "g"}]
    cfg["verify"] = [{"id": "check", "goal": "v", "depends_on": ["nothing"]}]
    write_config(loop, cfg)
    assert loop.doit().code == 0
    capsys.readouterr()
    assert main(["final"]) == 1
    assert capsys.readouterr().err == (
        "rlm: final refused: no decision: write `decision: {should_finish, reason, conclusions}` in rlm.yaml\n"
    )
    cfg["decision"] = {"should_finish": True, "reason": "r", "conclusions": [{"text": "t", "evidence": ["nope.md"]}]}
    write_config(loop, cfg)
    assert main(["final"]) == 2  # a mistake in rlm.yaml, said where
    line = next(n for n, text in enumerate((loop.root / "rlm.yaml").read_text().splitlines(), 1) if "nope.md" in text)
    assert capsys.readouterr().err == (
        f"rlm.yaml:{line}:7: decision.conclusions[0].evidence[0]: evidence path 'nope.md' does not exist\n"
    )
    assert not (loop.root / f"{RUN}/final.json").exists()


@pytest.mark.slow
def test_budget_exhausted(loop: Repo) -> None:
    cfg = config(loop)
    cfg["budget"]["max_workers"] = 2
    cfg["budget"]["max_inflight"] = 1
    cfg["verify"] = [{"id": "check", "goal": "v", "depends_on": ["bullets"]}]
    cfg["decision"] = {"should_finish": False, "reason": "wanted more"}
    write_config(loop, cfg)
    result = loop.doit()
    assert result.code == 1
    out = result.out
    refusals = [line for line in out.splitlines() if line.startswith("  STOPPED ")]
    assert len(refusals) == 3
    assert refusals[0].endswith(
        "budget exhausted: max_workers (2 worker attempts started, limit 2); "
        "map:nothing not started (raise the budget in rlm.yaml to go on)"
    )
    assert out.splitlines()[-1].startswith(
        "rlm: budget exhausted: max_workers (2 worker attempts started, limit 2): the run ends here")
    state = load(f"{RUN}/reduce_state.json")
    assert state["budget"]["attempts_used"] == 2
    assert state["budget"]["exhausted"] == "max_workers (2 worker attempts started, limit 2)"
    # a terminal state: final records it next to the decision with what is not done, and archive accepts it
    assert main(["final"]) == 0
    decision = load(f"{RUN}/final.json")["termination_decision"]
    assert (decision["should_finish"], decision["reason"]) == (False, "wanted more")
    assert decision["budget_exhausted"] == "budget exhausted: max_workers (2 worker attempts started, limit 2)"
    assert len(load(f"{RUN}/final.json")["unfinished_tasks"]) == 3
    assert main(["archive"]) == 0


@pytest.mark.slow
def test_budget_exhausted_final_finishes(loop: Repo) -> None:
    cfg = config(loop)
    cfg["tasks"] = [{"id": "nothing", "goal": "g"}]
    cfg["verify"] = [{"id": "check", "goal": "v", "depends_on": ["nothing"]}]
    cfg["budget"]["max_iterations"] = 1
    cfg["decision"] = {"should_finish": False, "reason": "wanted more"}
    write_config(loop, cfg)
    assert loop.doit().code == 0
    assert main(["final"]) == 0
    decision = load(f"{RUN}/final.json")["termination_decision"]
    # the user's decision stays visible; the budget's end is recorded next to it
    assert (decision["should_finish"], decision["reason"]) == (False, "wanted more")
    assert decision["budget_exhausted"] == "budget exhausted: max_iterations (1 of 1 iterations used)"
    assert decision["terminal"] is True
    # a plan change past max_iterations starts no worker and uses nothing
    cfg["tasks"][0]["goal"] = "changed"
    write_config(loop, cfg)
    assert loop.doit().code == 1
    assert load(f"{RUN}/plan.json")["iteration"] == 1
    assert not (loop.root / f"{RUN}/artifacts/plan.iter-1.json").exists()


@pytest.mark.slow
def test_unchanged_plan_is_not_an_iteration(loop: Repo) -> None:
    assert loop.doit().code == 0
    assert loop.doit().code == 0
    assert load(f"{RUN}/plan.json")["iteration"] == 1
    assert not (loop.root / f"{RUN}/artifacts/plan.iter-1.json").exists()


@pytest.mark.slow
def test_python_m_entry_point(loop: Repo) -> None:
    result = loop.rlm_cli("reduce")
    assert result.code == 0, result.err
    assert result.out == (f"reduce: 4 tasks (4 missing), iteration 1 (this machine's ages, running workers and drift "
                          f"in {LOCAL}/reduce_state.local.json): {RUN}/reduce_state.json\n")
