"""What every worker is told and given: time budget, the whole workflow in the prompt and contract,
plan.json's fields, partial reports (self-termination) and accept_partial, the skills' rules."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import yaml
from conftest import RUN_DIR as RUN
from conftest import Repo

from rlm_tasks.config import schema
from rlm_tasks.install import skills

REPORTS = f"{RUN}/artifacts/reports"
PARTIAL = ("# {worker_id}\n\n## What I did\nhalf\n\n## Self-termination\nout of time\n\n## Partial results\n- half\n\n"
           "## Next worker plan\n1. finish\n\n## Required scope\n- more time\n\n## Contract Compliance\n- kept\n")


def edit(repo: Repo, change: Any) -> None:
    data = yaml.safe_load(repo.path("rlm.yaml").read_text())
    change(data)
    repo.write(data)


def test_every_worker_gets_its_time_budget_in_the_environment_and_the_prompt(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    assert repo.doit().code == 0
    record = repo.records("a")[0]
    deadline = dt.datetime.fromisoformat(record["env"]["RLM_DEADLINE"].replace("Z", "+00:00"))
    assert record["env"]["RLM_TIMEOUT_SECONDS"] == "60"
    assert before + dt.timedelta(seconds=60) <= deadline <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60)
    prompt = repo.path(f"{RUN}/artifacts/prompts/a.md").read_text()
    assert ("## Time budget\nYour attempt may run `$RLM_TIMEOUT_SECONDS` seconds and ends at `$RLM_DEADLINE` "
            "(UTC, ISO 8601; both empty when no timeout is set): then the whole process group is killed. "
            "Stop in time to write the report.\n") in prompt


@pytest.mark.slow
def test_the_prompt_and_the_contract_carry_the_workflow(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    edit(repo, lambda d: d.update(hint_paths=["docs/"], verify=[{"id": "v", "goal": "V"}]))
    assert repo.doit().code == 0
    prompt = repo.path(f"{RUN}/artifacts/prompts/a.md").read_text()
    for text in (
        "The report is the deliverable: keep your chat output minimal (one line naming the report), nobody reads it.",
        "## Hint paths\nSoft hints, where to start; not a fence. If you go beyond them (or beyond the contract's "
        "scope), write the scope expansion and why in your report.\n- `docs/`\n",
        "In Contract Compliance, state point by point: the contract read (its path); each invariant held; scope "
        "respected (what you touched, any scope expansion with its reason); deviations, each with its reason; the "
        "verification commands you ran and their results.",
        "plus `Self-termination` (why you stopped), `Partial results` (what is done and can be trusted), "
        "`Next worker plan` (the steps a next worker should take) and `Required scope` (what it needs that you did "
        "not have).",
    ):
        assert text in prompt
    assert "You are a verify worker" not in prompt
    verify = repo.path(f"{RUN}/artifacts/prompts/v.md").read_text()
    assert ("You are a verify worker: for each claim you check, say whether it holds, and state the interpreter, "
            "the environment and the working directory you ran your commands in.") in verify
    contract = repo.path(f"{RUN}/artifacts/context/run_contract.md").read_text()
    assert ("## Working directory and verification\nWorking directory: `.` (the repository root).\n"
            "Verification baseline: the run declares no verification commands.") in contract
    edit(repo, lambda d: d.update(contract={"verification": {"cwd": "src", "interpreter": "python3",
                                                             "commands": ["pytest -q"]}}))
    assert repo.rlm("render").code == 0
    contract = repo.path(f"{RUN}/artifacts/context/run_contract.md").read_text()
    assert ("Working directory: `src`.\nInterpreter: `python3`\nVerification baseline: these commands, run from the "
            "working directory, are how the run checks its work; compare against their result before your change, "
            "and report both.\n- `pytest -q`\n") in contract


def test_validate_warns_without_invariants_or_verification(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    edit(repo, lambda d: d.update(contract={"invariants": []}))
    line = repo.path("rlm.yaml").read_text().splitlines().index("  invariants: []") + 1
    result = repo.rlm("validate")
    code, out, err = result.code, result.out, result.err
    assert (code, out) == (0, "rlm.yaml: valid: run t, 1 map tasks, 0 verify tasks\n")
    assert err.splitlines() == [
        f"rlm.yaml:{line}:3: contract.invariants: warning: workers get no invariants to keep",
        f"rlm.yaml:{line}:3: contract.verification: warning: no verification commands: "
        "workers cannot compare against a baseline",
    ]
    edit(repo, lambda d: d.update(contract={"invariants": ["no network"], "verification": {"commands": ["true"]}}))
    assert repo.rlm("validate").err == ""


def test_plan_json_carries_success_criteria_hint_paths_context_paths_and_worker_ids(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A", "context_paths": ["docs/a.md"]}])
    edit(repo, lambda d: d.update(success_criteria=["every module mapped"], hint_paths=["docs/"]))
    assert repo.doit().code == 0
    plan = json.loads(repo.path(f"{RUN}/plan.json").read_text())
    assert schema.check("plan", plan) == []
    assert (plan["success_criteria"], plan["hint_paths"]) == (["every module mapped"], ["docs/"])
    assert [(t["worker_id"], t["context_paths"]) for t in plan["tasks"]] == [("a", ["docs/a.md"])]


@pytest.mark.slow
def test_a_partial_report_is_shown_as_partial_does_not_rerun_and_fails_check_unless_accepted(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"]}],
                       {"a": {"attempts": {"1": {"text": PARTIAL}}}})
    first = repo.doit()
    assert first.code == 0
    line = next(x for x in first.lines if "map:a" in x and "start" not in x)
    assert line.startswith("  partial map:a  ")
    assert line.endswith(f"s  {REPORTS}/a.md  (next worker plan: {REPORTS}/a.md#next-worker-plan)")
    assert repo.doit().code == 0
    assert [(r["worker_id"], r["attempt"]) for r in repo.records()] == [("a", 1), ("b", 1)]  # no loop
    result = repo.rlm("check")
    code, out = result.code, result.out
    assert code == 1
    assert out.splitlines() == [
        "run t: 2 tasks: 1 fresh, 0 stale, 0 missing, 0 invalid, 1 partial",
        f"partial  map:a{' ' * 26}next worker plan: {REPORTS}/a.md#next-worker-plan  {REPORTS}/a.md",
        "partial reports stop `rlm check` unless their task sets `accept_partial: true`",
    ]
    status = json.loads(repo.rlm("status", "--json").out)
    assert schema.check("status", status) == []
    assert {t["id"]: t["state"] for t in status["tasks"]} == {"a": "partial", "b": "fresh"}
    assert status["tasks"][0]["next_plan_path"] == f"{REPORTS}/a.md#next-worker-plan"
    assert repo.rlm("reduce").code == 0
    state = json.loads(repo.path(f"{RUN}/reduce_state.json").read_text())
    assert schema.check("reduce_state", state) == []
    assert state["partial"] == ["a"] and state["tasks"][0]["next_plan_path"] == f"{REPORTS}/a.md#next-worker-plan"
    attempts = json.loads(repo.path(f"{RUN}/artifacts/attempts/a.json").read_text())
    assert [a["outcome"] for a in attempts["attempts"]] == ["partial"]
    edit(repo, lambda d: d["tasks"][0].update(accept_partial=True))
    assert repo.doit().code == 0  # accept_partial is not part of the prompt: nothing runs again
    assert len(repo.calls()) == 2
    assert repo.rlm("check").code == 0
    edit(repo, lambda d: d.update(verify=[{"id": "v", "goal": "V"}], decision={"should_finish": True, "reason": "r"}))
    assert repo.doit().code == 0
    assert repo.rlm("final").code == 0
    final = json.loads(repo.path(f"{RUN}/final.json").read_text())
    assert final["partial_reports"] == [{"id": "a", "report_path": f"{REPORTS}/a.md",
                                         "next_plan_path": f"{REPORTS}/a.md#next-worker-plan", "accepted": True}]
    assert (f"- [\\{REPORTS}/a.md](artifacts/reports/a.md): [its next worker plan]"
            "(artifacts/reports/a.md#next-worker-plan) (accepted)" in repo.path(f"{RUN}/final.md").read_text())


def test_the_skills_carry_the_workflow() -> None:
    worker = (skills.SKILLS_DIR / "map-worker" / "SKILL.md").read_text()
    for section in ("What I did", "Key findings", "Evidence", "Open questions / risks", "Deferred opportunities",
                    "Contract Compliance", "Self-termination", "Partial results", "Next worker plan",
                    "Required scope"):
        assert f"## {section}\n" in worker
    assert "`.rlm/runs/<run_id>/artifacts/context/<worker_id>.md`" in worker
    assert "`RLM_TIMEOUT_SECONDS`" in worker and "`RLM_DEADLINE`" in worker
    # every rule of the orchestrator skill: tests/test_skills.py
