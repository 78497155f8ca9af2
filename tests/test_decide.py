"""VERIFY after MAP, iterations and the budget as a terminal state, final.json digests, archive refusal.

End to end through in-process doit and `rlm`, with the fake agent as a command worker.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml
from conftest import LOCAL_RUN as LOCAL
from conftest import RUN_DIR as RUN
from conftest import Repo, wait_for

from rlm_tasks.config import schema
from rlm_tasks.phases import final as final_phase
from rlm_tasks.state import cache

REPORTS = f"{RUN}/artifacts/reports"
MAP = [{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}]


def edit(repo: Repo, change: Any) -> None:
    data = yaml.safe_load(repo.path("rlm.yaml").read_text())
    change(data)
    repo.write(data)


def load(repo: Repo, rel: str) -> Any:
    return json.loads(repo.path(rel).read_text())


def triple(result: Any) -> tuple[int, str, str]:
    return result.code, result.out, result.err


def started(repo: Repo) -> list[tuple[str, int]]:
    return [(r["worker_id"], r["attempt"]) for r in repo.calls()]


def finished_run(repo: Repo, **budget: int) -> None:
    """Map a and b, verify v (no depends_on), the decision to finish citing a's report, final written."""
    repo.write_command(MAP)
    edit(repo, lambda d: d.update(verify=[{"id": "v", "goal": "Check a and b."}], budget={**d["budget"], **budget}))
    assert repo.doit().code == 0
    edit(repo, lambda d: d.update(decision={"should_finish": True, "reason": "answered",
                                            "conclusions": [{"text": "a holds", "evidence": [f"{REPORTS}/a.md"]}]}))
    assert repo.rlm("final").code == 0


def test_a_verify_task_without_depends_on_runs_after_every_map_task_and_goes_stale_with_them(repo: Repo) -> None:
    repo.write_command(MAP)
    edit(repo, lambda d: d.update(verify=[{"id": "v", "goal": "Check."}]))
    plan = load(repo, f"{RUN}/plan.json") if repo.path(f"{RUN}/plan.json").exists() else None
    assert plan is None
    assert repo.doit().code == 0
    assert started(repo)[-1] == ("v", 1)  # after both map tasks
    assert [t["depends_on"] for t in load(repo, f"{RUN}/plan.json")["tasks"]] == [[], [], ["a", "b"]]
    report = repo.path(f"{REPORTS}/b.md")
    report.write_text(report.read_text() + "\nedited by hand\n")
    code, out, _ = triple(repo.rlm("check"))
    assert code == 1
    assert out.splitlines()[1:] == [
        f"stale    map:b{' ' * 26}report_changed  {REPORTS}/b.md",
        f"stale    verify:v{' ' * 23}input_changed,upstream_stale (changed: {REPORTS}/b.md; upstream: map:b)  "
        f"{REPORTS}/v.md",
    ]


@pytest.mark.slow
def test_final_is_refused_while_a_map_report_is_not_fresh(repo: Repo) -> None:
    finished_run(repo)
    edit(repo, lambda d: d["tasks"][0].update(goal="A, asked differently"))
    code, _, err = triple(repo.rlm("final"))
    assert code == 1
    assert err == ("rlm: final refused: map report of map:a is stale (prompt_changed): run doit first; "
                   "verify report of verify:v is stale (upstream_stale (upstream: map:a)): run doit first\n")


@pytest.mark.slow
def test_edits_inside_an_iteration_use_none_a_plan_change_after_deciding_to_iterate_does(repo: Repo) -> None:
    repo.write_command(MAP)
    assert repo.doit().code == 0
    # inside iteration 1: fix a goal, add the verify task, add a retry
    edit(repo, lambda d: d["tasks"][0].update(goal="A, fixed"))
    edit(repo, lambda d: d.update(verify=[{"id": "v", "goal": "Check."}]))
    edit(repo, lambda d: d["tasks"][1].update(retries=1))
    assert repo.doit().code == 0
    assert load(repo, f"{RUN}/plan.json")["iteration"] == 1
    assert not repo.path(f"{RUN}/artifacts/plan.iter-1.json").exists()
    # DECIDE: iterate
    edit(repo, lambda d: d.update(decision={"should_finish": False, "reason": "b needs a second look"}))
    assert repo.rlm("final").code == 0
    assert load(repo, f"{RUN}/final.json")["iteration"] == 1
    assert repo.doit().code == 0  # nothing changed: still iteration 1
    assert load(repo, f"{RUN}/plan.json")["iteration"] == 1
    # the plan changes after that decision: iteration 2, the plan of iteration 1 kept
    edit(repo, lambda d: d["tasks"][1].update(goal="B, a second look"))
    assert repo.doit().code == 0
    plan = load(repo, f"{RUN}/plan.json")
    assert (plan["iteration"], plan["changed_since_last_iteration"]) == (
        2, {"added": [], "removed": [], "edited": ["b"]})
    assert load(repo, f"{RUN}/artifacts/plan.iter-1.json")["iteration"] == 1
    assert load(repo, f"{RUN}/reduce_state.json")["budget"]["iterations_used"] == 2


@pytest.mark.slow
def test_the_budget_ends_the_run_final_records_it_next_to_the_decision_and_archive_accepts_it(repo: Repo) -> None:
    repo.write_command(MAP)
    edit(repo, lambda d: d.update(verify=[{"id": "v", "goal": "Check."}], budget={**d["budget"], "max_iterations": 1},
                                  decision={"should_finish": False, "reason": "wanted more"}))
    assert repo.doit().code == 0
    code, out, _ = triple(repo.rlm("final"))
    assert code == 0
    assert out == (f"final: iterate, but budget exhausted: max_iterations (1 of 1 iterations used): the run ends "
                   f"here (wanted more): {RUN}/final.json, {RUN}/final.md\n")
    final = load(repo, f"{RUN}/final.json")
    assert schema.check("final", final) == []
    assert "- Terminal: **budget exhausted: max_iterations (1 of 1 iterations used)**" in repo.path(
        f"{RUN}/final.md").read_text()
    # a changed plan would need iteration 2: refused, and it uses nothing
    edit(repo, lambda d: d["tasks"][0].update(goal="A, again"))
    refused = repo.doit()
    assert refused.code == 1
    assert ("  FAILED  plan: budget exhausted: max_iterations (1 of 1 iterations used); the decision said iterate, "
            "but no iteration is left for the changed plan: `doit final` records the run as finished with the "
            "budget exhausted, or raise budget.max_iterations in rlm.yaml\n") in refused.out
    assert load(repo, f"{RUN}/plan.json")["iteration"] == 1
    assert len(repo.calls()) == 3
    edit(repo, lambda d: d["tasks"][0].update(goal="A"))
    assert repo.rlm("archive").code == 0


@pytest.mark.slow
def test_budget_counters_survive_archiving(repo: Repo) -> None:
    finished_run(repo, max_workers=10)
    before = load(repo, f"{RUN}/reduce_state.json")["budget"]
    assert (before["workers_used"], before["attempts_used"]) == (3, 3)
    assert repo.rlm("archive").code == 0
    assert not repo.path(f"{LOCAL}/logs").exists()  # compressed away
    assert repo.rlm("reduce").code == 0
    after = load(repo, f"{RUN}/reduce_state.json")["budget"]
    assert (after["workers_used"], after["attempts_used"]) == (3, 3)


@pytest.mark.slow
def test_final_json_records_digests_and_status_and_check_say_when_it_is_out_of_date(repo: Repo) -> None:
    finished_run(repo)
    final = load(repo, f"{RUN}/final.json")
    assert schema.check("final", final) == []
    assert sorted(final["digests"]) == ["decision", "plan", "reports"]
    assert sorted(final["digests"]["reports"]) == [f"{REPORTS}/a.md", f"{REPORTS}/b.md", f"{REPORTS}/v.md"]
    code, out, _ = triple(repo.rlm("status", "--json"))
    assert json.loads(out)["final"] == {"path": f"{RUN}/final.json", "state": "current", "changed": []}
    assert repo.rlm("check").code == 0
    # the decision changes: final no longer says what rlm.yaml decides
    edit(repo, lambda d: d["decision"].update(reason="answered twice"))
    line = (f"final: {RUN}/final.json is out of date (decision changed): run `doit final` again")
    code, out, _ = triple(repo.rlm("check"))
    assert (code, out.splitlines()[-1]) == (1, line)
    assert line in repo.rlm("status").out.splitlines()
    status = json.loads(repo.rlm("status", "--json").out)
    assert schema.check("status", status) == []
    assert status["final"]["state"] == "out_of_date"
    assert repo.rlm("final").code == 0
    assert repo.rlm("check").code == 0


def test_evidence_that_does_not_exist_is_a_validation_error_with_its_position(repo: Repo) -> None:
    repo.write_command(MAP)
    repo.write("x\n", "cited.md")
    edit(repo, lambda d: d.update(decision={"should_finish": True, "reason": "r", "conclusions": [
        {"text": "t", "evidence": ["cited.md", "missing.md"]}]}))
    line = next(n for n, text in enumerate(repo.path("rlm.yaml").read_text().splitlines(), 1) if "missing.md" in text)
    code, out, err = triple(repo.rlm("validate"))
    assert (code, out, err) == (2, "", f"rlm.yaml:{line}:7: decision.conclusions[0].evidence[1]: "
                                       "evidence path 'missing.md' does not exist\n")
    assert repo.doit().code == 0  # MAP runs before the reports a decision will cite exist
    assert triple(repo.rlm("final")) == (2, "", err)
    doit_final = repo.doit("final")  # `doit final` and `rlm final` agree: 2 for a mistake in rlm.yaml
    assert doit_final.code == 2, doit_final.out
    assert f"  FAILED  final: {err}" in doit_final.out
    edit(repo, lambda d: d.pop("decision"))
    assert (repo.rlm("final").code, repo.doit("final").code) == (1, 1)  # 1 for a refusal
    edit(repo, lambda d: d.update(decision={"should_finish": True, "reason": "r", "conclusions": [
        {"text": "t", "evidence": ["cited.md", "missing.md"]}]}))
    repo.write("now it exists\n", "missing.md")
    assert repo.rlm("validate").code == 0


@pytest.mark.slow
def test_archive_refuses_a_run_that_is_not_at_a_terminal_state(repo: Repo) -> None:
    repo.write_command(MAP)
    edit(repo, lambda d: d.update(verify=[{"id": "v", "goal": "Check."}]))
    assert repo.doit().code == 0
    code, _, err = triple(repo.rlm("archive"))
    assert (code, err) == (1, f"rlm: archive refused: run 't' has no {RUN}/final.json; "
                              "finish the run first (`doit final`)\n")
    edit(repo, lambda d: d.update(decision={"should_finish": False, "reason": "more"}))
    assert repo.rlm("final").code == 0
    code, _, err = triple(repo.rlm("archive"))
    assert (code, err) == (1, f"rlm: archive refused: the decision in {RUN}/final.json says iterate "
                              "(should_finish: false) and budget is left: change the plan and run doit for the next "
                              "iteration, or write `should_finish: true` in rlm.yaml and run `doit final`, "
                              "then archive\n")
    edit(repo, lambda d: d["decision"].update(should_finish=True))
    code, _, err = triple(repo.rlm("archive"))
    assert (code, err) == (1, f"rlm: archive refused: {RUN}/final.json is out of date (decision changed); "
                              "run `doit final` again, then archive\n")
    assert repo.rlm("final").code == 0
    assert repo.rlm("archive").code == 0


@pytest.mark.slow
def test_an_edited_goal_makes_final_out_of_date_before_doit_runs(repo: Repo) -> None:
    finished_run(repo)
    edit(repo, lambda d: d["tasks"][0].update(goal="A, asked again"))  # plan.json is only rewritten by doit
    line = f"final: {RUN}/final.json is out of date (rlm.yaml changed since plan.json): run `doit final` again"
    assert line in repo.rlm("status").out.splitlines()
    code, _, err = triple(repo.rlm("archive"))  # it archived the unfinished run
    assert (code, err) == (1, f"rlm: archive refused: {RUN}/final.json is out of date (rlm.yaml changed since "
                              "plan.json); run `doit final` again, then archive\n")


@pytest.mark.slow
def test_a_current_final_is_checked_by_stat_until_a_report_changes(repo: Repo, monkeypatch: Any) -> None:
    """Once `rlm check` found final.json current, it reads no report again while every file keeps its stat."""
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.05)
    finished_run(repo)
    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in repo.root.rglob("*") if p.is_file())
    wait_for(lambda: time.time() > newest + 0.1, "the racy window to pass")
    assert repo.rlm("check").code == 0  # current: marked
    hashed = final_phase.sha256_file

    def refuse(*_: object) -> None:
        raise AssertionError("a current final.json's reports were read again")

    monkeypatch.setattr(final_phase, "sha256_file", refuse)
    assert triple(repo.rlm("check")) == (0, "run t: 3 tasks: 3 fresh, 0 stale, 0 missing, 0 invalid\n", "")
    monkeypatch.setattr(final_phase, "sha256_file", hashed)
    report = repo.path(f"{REPORTS}/a.md")
    report.write_text(report.read_text().replace("a", "A"))  # same size
    line = f"final: {RUN}/final.json is out of date (reports changed: {REPORTS}/a.md): run `doit final` again"
    code, out, _ = triple(repo.rlm("check"))
    assert (code, out.splitlines()[-1]) == (1, line)
