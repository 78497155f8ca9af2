"""No silent waste: an agent that is missing or does not run is one line before any worker starts, and attempts
failing in a row with one cause (from the agent's structured events) stop the run in one line.

The real codex and claude CLIs against loopback endpoints are in tests/e2e/test_fail_fast_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import LOCAL_RUN, RUN_DIR, Repo

from rlm_tasks.run import usage
from rlm_tasks.vocabulary import Cause

LOGS = f"{LOCAL_RUN}/logs"
UNREACHABLE = [{"type": "error", "message": "Reconnecting... 1/5 (Connection failed: error sending request)"},
               {"type": "turn.failed", "error": {"message": "Connection failed: error sending request for url"}}]
AUTH = [{"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized: bad key"}}]


def tasks(n: int) -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "goal": f"Task {i}."} for i in range(1, n + 1)]


def test_a_missing_agent_binary_is_one_line_before_any_worker_starts(repo: Repo) -> None:
    repo.write_codex(tasks(3), agent={"binary": str(repo.root / "no-such-codex")})
    result = repo.doit()
    assert (result.code, result.err) == (2, f"rlm.yaml: agent check failed for map:t1: agent executable "
                                            f"'{repo.root / 'no-such-codex'}' does not exist; no worker started\n")
    assert "start " not in result.out and repo.calls() == []
    assert not repo.path(f"{RUN_DIR}/artifacts/attempts").exists()  # nothing was attempted


def test_an_agent_that_does_not_run_is_one_line_before_any_worker_starts(repo: Repo) -> None:
    broken = repo.write("#!/bin/sh\nexit 3\n", "broken-codex")
    broken.chmod(0o755)
    repo.write_codex(tasks(2), agent={"binary": str(broken)})
    result = repo.doit()
    assert (result.code, result.err) == (2, f"rlm.yaml: agent check failed: `{broken} --version` exited with code 3 "
                                            "(codex agent of map:t1; agent.binary or agent.command); "
                                            "no worker started\n")
    assert repo.calls() == []


def test_a_command_worker_whose_program_is_missing_is_refused_the_same_way(repo: Repo) -> None:
    repo.write_command(tasks(2), agent={"command": ["./no-such-worker.sh"]})
    result = repo.doit()
    assert (result.code, result.err) == (2, f"rlm.yaml: agent check failed: `{repo.root / 'no-such-worker.sh'}` is "
                                            "not an executable file (command agent of map:t1; agent.binary or "
                                            "agent.command); no worker started\n")


def test_the_agent_is_checked_once_and_a_no_op_checks_nothing(repo: Repo) -> None:
    counter = repo.root / "version-calls"
    wrapper = repo.write(f"#!/bin/sh\n[ \"$1\" = --version ] && echo x >> {counter}\nexec python3 "
                         f"{Path(__file__).parent / 'fake_agent.py'} \"$@\"\n", "codex-wrapper")
    wrapper.chmod(0o755)
    repo.write_codex(tasks(3), agent={"binary": str(wrapper)})
    assert repo.doit().code == 0
    assert counter.read_text() == "x\n"
    assert repo.doit().code == 0  # every task fresh: no check, no worker
    assert counter.read_text() == "x\n"


def test_attempts_failing_in_a_row_with_one_cause_stop_the_run(repo: Repo) -> None:
    repo.write_codex(tasks(6), budget={"max_inflight": 1}, defaults={"retries": 1, "backoff_seconds": 0})
    repo.agent_spec({"*": {"exit": 1, "report": "none", "events": UNREACHABLE}})
    result = repo.doit("-n", "1")
    assert result.code == 1
    assert len(repo.calls()) == 3  # t1 twice, t2 once: then nothing new starts, no retry either
    stopped = [line for line in result.lines if line.startswith("  STOPPED ")]
    assert stopped == [
        "  STOPPED map:t3: stopped: 3 attempts in a row failed with the same cause: model endpoint unreachable "
        f"(last: {LOGS}/t2.attempt-1.log); no new attempt starts (fix it and run again; "
        "budget.stop_after_same_failures sets how many)"]  # one line, not one per task
    assert result.lines[-1].startswith(
        "rlm: stopped: 3 attempts in a row failed with the same cause: model endpoint unreachable; 0 ran, 2 failed, "
        "4 not started (stopped), 0 fresh in ")
    assert (f"  FAILED  map:t2: attempt 1, exit: agent exited with code 1 (model endpoint unreachable); "
            f"log: {LOGS}/t2.attempt-1.log (1 of 2 tries)") in result.lines
    assert (f"  FAILED  map:t1: attempt 2, exit: agent exited with code 1 (model endpoint unreachable); "
            f"log: {LOGS}/t1.attempt-2.log (2 of 2 tries)") in result.lines
    attempts = json.loads(repo.path(f"{RUN_DIR}/artifacts/attempts/t1.json").read_text())["attempts"]
    assert [(a["outcome"], a["cause"]) for a in attempts] == [("exit", "network")] * 2
    status = json.loads(repo.rlm("status", "--json").out)
    failure = {t["id"]: t.get("failure") for t in status["tasks"]}
    assert failure["t1"] is not None and failure["t1"]["cause"] == "network"


def test_different_causes_or_unclassified_failures_never_stop_the_run(repo: Repo) -> None:
    repo.write_codex(tasks(6), budget={"max_inflight": 1})
    repo.agent_spec({"t1": {"exit": 1, "report": "none", "events": UNREACHABLE},
                     "t2": {"exit": 1, "report": "none", "events": UNREACHABLE},
                     "t3": {"exit": 1, "report": "none", "events": AUTH},
                     "t4": {"exit": 1, "report": "none"}, "t5": {"exit": 1, "report": "none"},
                     "t6": {"exit": 1, "report": "none"}})
    result = repo.doit("-n", "1")
    assert result.code == 1
    assert len(repo.calls()) == 6 and "STOPPED" not in result.out


@pytest.mark.parametrize("limit", [0, 5])
def test_the_limit_is_settable_and_0_never_stops(repo: Repo, limit: int) -> None:
    repo.write_codex(tasks(6), budget={"max_inflight": 1, "stop_after_same_failures": limit})
    repo.agent_spec({"*": {"exit": 1, "report": "none", "events": AUTH}})
    result = repo.doit("-n", "1")
    assert len(repo.calls()) == (limit or 6)
    assert ("authentication failed" in result.out) and (("STOPPED" in result.out) is bool(limit))


# ---- the classification, on the events the pinned CLIs print (recorded from codex 0.169.0, claude 2.1.330) -----

CODEX_EVENTS = {
    Cause.NETWORK: [{"type": "error", "message": "Reconnecting... waiting for network (Connection "
                                                              "failed: error sending request)"}],
    Cause.AUTH: [{"type": "error", "message": "unexpected status 401 Unauthorized: scripted 401, url: x"},
                        {"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized: x"}}],
    Cause.RATE_LIMIT: [{"type": "turn.failed",
                          "error": {"message": "exceeded retry limit, last status: 429 Too Many Requests"}}],
    Cause.CONTEXT: [{"type": "turn.failed", "error": {
        "message": "Codex ran out of room in the model's context window. Start a new thread or clear earlier "
                   "history before retrying."}}],
    Cause.SERVER: [{"type": "error", "message": "We’re currently experiencing high demand, which may cause "
                                                      "temporary errors."},
                         {"type": "turn.failed", "error": {"message": "We’re currently experiencing high demand, which "
                                                                      "may cause temporary errors."}}],
}


def _result(**fields: Any) -> dict[str, Any]:
    return {"type": "result", "subtype": "success", "is_error": True, "api_error": None, "api_error_status": None,
            "terminal_reason": "api_error", **fields}


CLAUDE_EVENTS = {
    Cause.NETWORK: [_result(api_error="connection_failed",
                            result="API Error: Connection refused — a firewall or proxy may be blocking it")],
    Cause.AUTH: [_result(api_error_status=401, result="Failed to authenticate. API Error: 401 scripted 401")],
    Cause.RATE_LIMIT: [_result(api_error_status=429, result="API Error: Request rejected (429) · scripted 429")],
    Cause.CONTEXT: [_result(api_error_status=400, terminal_reason="prompt_too_long",
                            result="Prompt is too long · the provider said: scripted 400")],
    Cause.SERVER: [_result(api_error_status=500, result="API Error: 500 scripted 500. This is a server-side issue")],
}


@pytest.mark.parametrize(("kind", "table"), [("codex", CODEX_EVENTS), ("claude", CLAUDE_EVENTS)])
def test_causes_come_from_the_agents_structured_events(tmp_path: Path, kind: str, table: dict[Cause, Any]) -> None:
    events = tmp_path / "events.jsonl"
    for cause, lines in table.items():
        events.write_text("".join(json.dumps(line) + "\n" for line in lines))
        found = usage.failure_from_events(kind, events)
        assert found is not None and found.cause == cause.value, (kind, cause, found)
    # no error event, or one that names no known cause: no cause
    events.write_text(json.dumps({"type": "turn.completed", "usage": {}}) + "\n")
    assert usage.failure_from_events(kind, events) is None
    events.write_text(json.dumps({"type": "error", "message": "something else"}) + "\n")
    assert usage.failure_from_events(kind, events) is None


def test_claudes_result_fields_decide_whatever_its_text_says(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(_result(api_error_status=429, result="request failed")) + "\n")
    found = usage.failure_from_events("claude", events)
    assert found is not None and found.cause == Cause.RATE_LIMIT.value
