"""Retries, tier escalation, stall detection, rejected reports and history, keep-going."""

from __future__ import annotations

import random

import pytest
from conftest import LOCAL_RUN, RUN_DIR, Repo, group_gone

from rlm_tasks.config import schema
from rlm_tasks.config.plan import load_plan
from rlm_tasks.run import attempts

RUN = RUN_DIR
LOCAL = LOCAL_RUN
FAIL = {"exit": 3, "report": "none"}
INVALID = {"report": "no-section"}


@pytest.mark.slow
def test_retry_then_succeed(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A", "retries": 2}, {"id": "b", "goal": "B"}],
                       {"a": {"attempts": {"1": FAIL}}})
    result = repo.doit()
    assert result.code == 0, result.out
    out = result.out
    assert (f"  retry   map:a: attempt 1, exit: agent exited with code 3; log: {LOCAL}/logs/a.attempt-1.log; "
            "attempt 2 (standard) in 0.0s\n") in out
    assert "  ok      map:a  " in out and "attempt 2, standard\n" in out
    entry = repo.tasks_done()["a"]
    assert entry["attempt"] == 2
    assert [(a["attempt"], a["outcome"], a["exit_code"]) for a in entry["attempts"]] == [(1, "exit", 3), (2, "ok", 0)]
    assert entry["log_path"] == f"{LOCAL}/logs/a.attempt-2.log"
    first_log = (repo.root / LOCAL / "logs/a.attempt-1.log").read_text()
    assert first_log.startswith("fake agent: a attempt 1 in mode spec\n")
    assert schema.check("provenance", repo.provenance()) == []
    # finished means finished: nothing runs again
    assert repo.doit().code == 0
    assert len(repo.records("a")) == 2 and len(repo.records("b")) == 1


@pytest.mark.slow
def test_escalation_in_argv_provenance_and_status(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}], {"a": {"attempts": {"1": INVALID, "2": INVALID}}},
                       defaults={"retries": 3, "escalate": True})
    assert repo.doit().code == 0
    runs = repo.records("a")
    assert [(r["tier"], r["argv"][2], r["argv"][4]) for r in runs] == [  # argv: fake_agent.py --model M --effort E
        ("standard", "gpt-5.1-codex-mini", "medium"),
        ("standard-plus", "gpt-5.2-codex", "medium"),
        ("heavy", "gpt-5.2-codex", "xhigh"),
    ]
    entry = repo.tasks_done()["a"]
    assert (entry["compute_tier"], entry["configured_tier"], entry["model"], entry["effort"]) == (
        "heavy", "standard", "gpt-5.2-codex", "xhigh")
    assert [a["outcome"] for a in entry["attempts"]] == ["invalid_report", "invalid_report", "ok"]
    # failed attempts' reports are moved aside, never left at report_path
    assert entry["attempts"][0]["rejected_report"] == f"{RUN}/artifacts/reports/a.attempt-1.rejected.md"
    assert (repo.root / RUN / "artifacts/reports/a.attempt-1.rejected.md").exists()
    assert (repo.root / RUN / "artifacts/reports/a.attempt-2.rejected.md").exists()
    assert "## Contract Compliance" in (repo.root / RUN / "artifacts/reports/a.md").read_text()  # attempt 3's
    # an escalated report is fresh: provenance digests the configured invocation
    status = repo.rlm("status")
    assert status.code == 0
    assert status.out == (
        "run t: 1 tasks: 1 fresh, 0 stale, 0 missing, 0 invalid\n"
        f"fresh    map:a                          {RUN}/artifacts/reports/a.md  (attempt 3, heavy)\n")
    assert repo.doit().code == 0
    assert len(repo.records("a")) == 3


@pytest.mark.slow
def test_stall_ends_the_group_and_retries(repo: Repo) -> None:
    repo.write_command([{"id": "h", "goal": "hang once", "stall_after": 0.6, "retries": 1}],
                       {"h": {"child": True, "attempts": {"1": {"hang": True}}}})
    result = repo.doit()
    assert result.code == 0, result.out
    first, second = repo.records("h")
    assert group_gone(first["pgid"]) and group_gone(second["pgid"])
    entry = repo.tasks_done()["h"]
    assert [a["outcome"] for a in entry["attempts"]] == ["stalled", "ok"]
    out = result.out
    assert "  retry   map:h: attempt 1, stalled: no change to its report, progress file or log for 0.6s; " in out


@pytest.mark.slow
def test_progress_file_keeps_a_quiet_worker_alive(repo: Repo) -> None:
    repo.write_command([{"id": "q", "goal": "quiet", "stall_after": 0.5}], {"q": {"sleep": 1.2, "progress": 0.1}})
    assert repo.doit().code == 0
    (run,) = repo.records("q")
    assert run["progress"] == str(repo.root / LOCAL / "progress/q.md")
    assert [a["outcome"] for a in repo.tasks_done()["q"]["attempts"]] == ["ok"]


@pytest.mark.slow
def test_exhausted_retries_fail_and_independent_keep_going(repo: Repo) -> None:
    repo.write_command([{"id": "bad", "goal": "B", "retries": 1},
                        {"id": "after", "goal": "C", "depends_on": ["bad"]}, {"id": "good", "goal": "G"}],
                       {"bad": FAIL})
    result = repo.doit()
    assert result.code == 1
    out = result.out
    assert (f"  FAILED  map:bad: attempt 2, exit: agent exited with code 3; log: {LOCAL}/logs/bad.attempt-2.log "
            "(2 of 2 tries)\n") in out
    assert "  SKIPPED map:after: a task it depends on failed\n" in out
    assert "rlm: 1 ran, 1 failed, 1 not started, 0 fresh in " in out
    assert set(repo.tasks_done()) == {"good"}
    assert not (repo.root / RUN / "artifacts/reports/bad.md").exists()
    status = repo.rlm("status")
    assert status.code == 0
    out = status.out
    assert f"1 failed (bad); logs: {LOCAL}/logs/\n" in out
    # the next run starts with the next attempt number; logs are never overwritten
    repo.agent_spec({})
    assert repo.doit().code == 0
    assert [r["attempt"] for r in repo.records("bad")] == [1, 2, 3]


@pytest.mark.slow
def test_rerun_keeps_the_earlier_fresh_report_in_history(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "first goal"}])
    assert repo.doit().code == 0
    first = (repo.root / RUN / "artifacts/reports/a.md").read_text()
    repo.write_command([{"id": "a", "goal": "second goal"}])
    assert repo.doit().code == 0
    assert (repo.root / RUN / "artifacts/history/a/1.md").read_text() == first
    assert repo.tasks_done()["a"]["attempt"] == 2


def test_backoff_and_tiers(repo: Repo) -> None:
    rng = random.Random(7)
    delays = [attempts.backoff_delay(2.0, retry, rng) for retry in (1, 2, 3)]
    assert 1.0 <= delays[0] < 3.0 and 2.0 <= delays[1] < 6.0 and 4.0 <= delays[2] < 12.0
    assert attempts.backoff_delay(1000.0, 5) == attempts.MAX_BACKOFF_SECONDS
    repo.write_command([{"id": "a", "goal": "A", "compute_tier": "standard-plus", "escalate": True},
                        {"id": "b", "goal": "B"}])
    plan = load_plan(repo.root / "rlm.yaml")
    a, b = plan.tasks
    assert [attempts.tier_for(plan, a, r).name for r in range(4)] == ["standard-plus", "heavy", "heavy", "heavy"]
    assert [attempts.tier_for(plan, b, r).name for r in range(3)] == ["standard"] * 3  # no escalate: same tier
