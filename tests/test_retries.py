"""Retries, tier escalation, stall detection, rejected reports and history, keep-going."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from _robust import LOCAL, RUN, doit_in_process, group_gone, kill_leftovers, make_repo, provenance, records, write_spec

from rlm_tasks.cli.main import main
from rlm_tasks.config import schema
from rlm_tasks.config.plan import load_plan
from rlm_tasks.run import attempts


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    kill_leftovers(tmp_path)


def test_retry_then_succeed(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_repo(repo, [{"id": "a", "goal": "A", "retries": 2}, {"id": "b", "goal": "B"}], {"a": {"fail": [1]}})
    assert doit_in_process() == 0
    out = capsys.readouterr().out
    assert (f"  retry   map:a: agent exited with code 3; log: {LOCAL}/logs/a.attempt-1.log; "
            "attempt 2 (standard) in 0.0s\n") in out
    assert "  ok      map:a  " in out and "attempt 2, standard\n" in out
    entry = provenance(repo)["a"]
    assert entry["attempt"] == 2
    assert [(a["attempt"], a["outcome"], a["exit_code"]) for a in entry["attempts"]] == [(1, "exit", 3), (2, "ok", 0)]
    assert entry["log_path"] == f"{LOCAL}/logs/a.attempt-2.log"
    assert (repo / LOCAL / "logs/a.attempt-1.log").read_text().startswith("fake agent a attempt 1 started")
    assert schema.check("provenance", {"version": 1, "run_id": "robust", "tasks": provenance(repo)}) == []
    # finished means finished: nothing runs again
    assert doit_in_process() == 0
    assert len(records(repo, "a")) == 2 and len(records(repo, "b")) == 1


def test_escalation_in_argv_provenance_and_status(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_repo(repo, [{"id": "a", "goal": "A"}], {"a": {"invalid": [1, 2]}}, retries=3, escalate=True)
    assert doit_in_process() == 0
    runs = records(repo, "a")
    assert [(r["tier"], r["argv"][2], r["argv"][4]) for r in runs] == [
        ("standard", "gpt-5.1-codex-mini", "medium"),
        ("standard-plus", "gpt-5.2-codex", "medium"),
        ("heavy", "gpt-5.2-codex", "xhigh"),
    ]
    entry = provenance(repo)["a"]
    assert (entry["compute_tier"], entry["configured_tier"], entry["model"], entry["effort"]) == (
        "heavy", "standard", "gpt-5.2-codex", "xhigh")
    assert [a["outcome"] for a in entry["attempts"]] == ["invalid_report", "invalid_report", "ok"]
    # failed attempts' reports are moved aside, never left at report_path
    assert entry["attempts"][0]["rejected_report"] == f"{RUN}/artifacts/reports/a.attempt-1.rejected.md"
    assert (repo / RUN / "artifacts/reports/a.attempt-1.rejected.md").exists()
    assert (repo / RUN / "artifacts/reports/a.attempt-2.rejected.md").exists()
    assert "attempt 3 on heavy" in (repo / RUN / "artifacts/reports/a.md").read_text()
    capsys.readouterr()
    # an escalated report is fresh: provenance digests the configured invocation
    assert main(["status"]) == 0
    assert capsys.readouterr().out == (
        "run robust: 1 tasks: 1 fresh, 0 stale, 0 missing, 0 invalid\n"
        f"fresh    map:a                          {RUN}/artifacts/reports/a.md  (attempt 3, heavy)\n")
    assert doit_in_process() == 0
    assert len(records(repo, "a")) == 3


def test_stall_ends_the_group_and_retries(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_repo(repo, [{"id": "h", "goal": "hang once", "stall_after": 0.6, "retries": 1}],
              {"h": {"hang": [1], "child": True}})
    assert doit_in_process() == 0
    first, second = records(repo, "h")
    assert group_gone(first["pgid"]) and group_gone(second["pgid"])
    entry = provenance(repo)["h"]
    assert [a["outcome"] for a in entry["attempts"]] == ["stalled", "ok"]
    out = capsys.readouterr().out
    assert "  retry   map:h: stalled: no change to its report, progress file or log for 0.6s; " in out


def test_progress_file_keeps_a_quiet_worker_alive(repo: Path) -> None:
    make_repo(repo, [{"id": "q", "goal": "quiet", "stall_after": 0.5}], {"q": {"sleep": 1.2, "progress": 0.1}})
    assert doit_in_process() == 0
    (run,) = records(repo, "q")
    assert run["progress"] == str(repo / LOCAL / "progress/q.md")
    assert [a["outcome"] for a in provenance(repo)["q"]["attempts"]] == ["ok"]


def test_exhausted_retries_fail_and_independent_keep_going(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_repo(repo, [{"id": "bad", "goal": "B", "retries": 1}, {"id": "after", "goal": "C", "depends_on": ["bad"]},
                     {"id": "good", "goal": "G"}], {"bad": {"fail": [1, 2]}})
    assert doit_in_process() == 1
    out = capsys.readouterr().out
    assert (f"  FAILED  map:bad: agent exited with code 3; log: {LOCAL}/logs/bad.attempt-2.log "
            "(attempt 2 of 2)\n") in out
    assert "  SKIPPED map:after: a task it depends on failed\n" in out
    assert "rlm: 1 ran, 1 failed, 1 not started, 0 fresh in " in out
    assert set(provenance(repo)) == {"good"}
    assert not (repo / RUN / "artifacts/reports/bad.md").exists()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"1 failed (bad); logs: {LOCAL}/logs/\n" in out
    # the next run starts with the next attempt number; logs are never overwritten
    write_spec(repo, {})
    assert doit_in_process() == 0
    assert [r["attempt"] for r in records(repo, "bad")] == [1, 2, 3]


def test_rerun_keeps_the_earlier_fresh_report_in_history(repo: Path) -> None:
    make_repo(repo, [{"id": "a", "goal": "first goal"}], {})
    assert doit_in_process() == 0
    first = (repo / RUN / "artifacts/reports/a.md").read_text()
    text = (repo / "rlm.yaml").read_text().replace("first goal", "second goal")
    (repo / "rlm.yaml").write_text(text)
    assert doit_in_process() == 0
    assert (repo / RUN / "artifacts/history/a/1.md").read_text() == first
    assert provenance(repo)["a"]["attempt"] == 2


def test_backoff_and_tiers(tmp_path: Path) -> None:
    rng = random.Random(7)
    delays = [attempts.backoff_delay(2.0, retry, rng) for retry in (1, 2, 3)]
    assert 1.0 <= delays[0] < 3.0 and 2.0 <= delays[1] < 6.0 and 4.0 <= delays[2] < 12.0
    assert attempts.backoff_delay(1000.0, 5) == attempts.MAX_BACKOFF_SECONDS
    make_repo(tmp_path, [{"id": "a", "goal": "A", "compute_tier": "standard-plus", "escalate": True},
                         {"id": "b", "goal": "B"}], {})
    plan = load_plan(tmp_path / "rlm.yaml")
    a, b = plan.tasks
    assert [attempts.tier_for(plan, a, r).name for r in range(4)] == ["standard-plus", "heavy", "heavy", "heavy"]
    assert [attempts.tier_for(plan, b, r).name for r in range(3)] == ["standard"] * 3  # no escalate: same tier
