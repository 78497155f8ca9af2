"""The report contract: a self-terminated report has all four partial sections; Contract Compliance is always
required; a custom prompt keeps the mandatory lines; the progress cadence is stated and used."""

from __future__ import annotations

import json

import pytest
from conftest import RUN_DIR, Repo

from rlm_tasks.config.plan import load_plan
from rlm_tasks.state import reports

REPORTS = f"{RUN_DIR}/artifacts/reports"
FULL = ("# {worker_id}\n\n## What I did\nhalf\n\n## Self-termination\nout of time\n\n## Partial results\n- half\n\n"
        "## Next worker plan\n1. finish\n\n## Required scope\n- more time\n\n## Contract Compliance\n- kept\n")
PARTIAL_SECTIONS = ("Self-termination", "Partial results", "Next worker plan", "Required scope")


@pytest.mark.parametrize("dropped", PARTIAL_SECTIONS)
def test_a_partial_report_without_one_of_the_four_sections_is_invalid_and_says_which(repo: Repo,
                                                                                     dropped: str) -> None:
    text = FULL.replace(f"## {dropped}\n", "## Notes\n")
    repo.write_command([{"id": "a", "goal": "A"}], {"a": {"text": text}})
    result = repo.doit()
    assert result.code == 1
    [failed] = [line for line in result.out.splitlines() if "FAILED" in line]
    others = [s for s in PARTIAL_SECTIONS if s != dropped]
    assert (f"  FAILED  map:a: attempt 1, invalid_report: partial report (it has '{others[0]}') lacks section "
            f"'{dropped}'; a self-terminated "
            "report needs all of 'Self-termination', 'Partial results', 'Next worker plan', 'Required scope' "
            "(report moved to") in failed


def test_a_partial_report_with_the_four_sections_is_partial(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}], {"a": {"text": FULL}})
    assert repo.doit().code == 0
    status = json.loads(repo.rlm("status", "--json").out)
    assert [t["state"] for t in status["tasks"]] == ["partial"]


def test_two_sections_missing_are_both_named(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "r.md"
    path.write_text("## Self-termination\nx\n## Partial results\ny\n## Contract Compliance\nz\n")
    assert reports.problem(path, ("Contract Compliance",)) == (
        "partial report (it has 'Self-termination') lacks sections 'Next worker plan', 'Required scope'; a "
        "self-terminated report needs all of 'Self-termination', 'Partial results', 'Next worker plan', "
        "'Required scope'")


def test_contract_compliance_is_required_whatever_required_sections_says(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A", "required_sections": []},
                        {"id": "b", "goal": "B", "required_sections": ["Evidence"]}],
                       {"*": {"report": "no-section"}}, defaults={"required_sections": ["Key findings"]})
    plan = load_plan(repo.path("rlm.yaml"))
    assert [t.required_sections for t in plan.tasks] == [("Contract Compliance",), ("Evidence", "Contract Compliance")]
    result = repo.doit()
    assert result.code == 1
    failed = sorted(line.split(" (report moved")[0] for line in result.out.splitlines() if "FAILED" in line)
    assert failed == ["  FAILED  map:a: attempt 1, invalid_report: report lacks required section 'Contract Compliance'",
                      "  FAILED  map:b: attempt 1, invalid_report: report lacks required section 'Contract Compliance'"]


def test_contract_compliance_in_another_spelling_is_required_once(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A", "required_sections": ["contract  COMPLIANCE", "Evidence"]}])
    assert load_plan(repo.path("rlm.yaml")).tasks[0].required_sections == ("contract  COMPLIANCE", "Evidence")


def test_join_false_makes_a_join_named_task_an_ordinary_one(repo: Repo) -> None:
    repo.write_command([{"id": "join-a", "goal": "A", "join": False}, {"id": "join-b", "goal": "B"},
                        {"id": "c", "goal": "C", "join": True}])
    assert [t.join for t in load_plan(repo.path("rlm.yaml")).tasks] == [False, True, True]


CUSTOM = ("Use the map-worker skill.\n$map-worker\nContract: {{ contract_path }}\nReport: {{ report_path }}\n"
          "{{ task_goal }}\n")


@pytest.mark.parametrize(("dropped", "named"), [
    ("Use the map-worker skill.\n", "'Use the map-worker skill.'"),
    ("$map-worker\n", "'$map-worker'"),
    ("Contract: {{ contract_path }}\n", f"the contract path '{RUN_DIR}/artifacts/context/run_contract.md'"),
    ("Report: {{ report_path }}\n", f"the report path '{REPORTS}/a.md'"),
])
def test_validate_refuses_a_custom_prompt_that_drops_a_mandatory_line(repo: Repo, dropped: str, named: str) -> None:
    repo.write_command([{"id": "a", "goal": "A"}], templates_dir="tpl")
    repo.write(CUSTOM, "tpl/worker_prompt.md.j2")
    assert repo.rlm("validate").code == 0
    repo.write(CUSTOM.replace(dropped, ""), "tpl/worker_prompt.md.j2")
    result = repo.rlm("validate")
    assert result.code == 2
    assert result.err.startswith(f"tpl/worker_prompt.md.j2: the prompt of task 'a' drops {named}")
    run = repo.doit()  # and a run never hands it to a worker
    assert run.code != 0 and repo.ran() == []


def test_progress_every_is_stated_in_the_prompt_and_sets_the_stall_limit(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A", "progress_every": 30}, {"id": "b", "goal": "B"},
                        {"id": "c", "goal": "C", "progress_every": 0.5, "stall_after": 100}])
    plan = load_plan(repo.path("rlm.yaml"))
    assert [(t.progress_every, t.stall_after) for t in plan.tasks] == [(30, 90), (None, None), (0.5, 100)]
    assert repo.rlm("render").code == 0
    prompt = repo.path(f"{RUN_DIR}/artifacts/prompts/a.md").read_text()
    assert ("a progress line within 30 s of starting, then every 30 s. An attempt whose report, progress file and "
            "log stay unchanged for 90 s is ended as stalled.") in prompt
    assert "within" not in repo.path(f"{RUN_DIR}/artifacts/prompts/b.md").read_text()
    assert "within 0.5 s of starting, then every 0.5 s" in repo.path(f"{RUN_DIR}/artifacts/prompts/c.md").read_text()


def test_a_worker_silent_past_three_progress_intervals_is_stalled(repo: Repo) -> None:
    repo.write_command([{"id": "quiet", "goal": "Q", "progress_every": 0.3}], {"quiet": {"hang": True}})
    result = repo.doit()
    assert result.code == 1
    assert ("  FAILED  map:quiet: attempt 1, stalled: no change to its report, progress file or log for 0.9s"
            in result.out)
