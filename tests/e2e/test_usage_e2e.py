"""Token accounting with the real codex and claude CLIs against the scripted servers.

Every scripted answer carries different, known usage (scripted_server.usage_for); the tokens rlm
recorded per attempt, per task and in total must be exactly the sums the server sent. A budget cap
on tokens stops new attempts. Skipped unless the pinned CLIs are installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses_server
from conftest import LOCAL_RUN, RUN_DIR
from messages_server import MessagesServer
from responses_server import ResponsesServer
from test_runner_e2e import CLAUDE_TIERS, CODEX_TIERS, claude_agent, codex_agent, config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("agent_environ")]

RUN = RUN_DIR
LOGS = f"{LOCAL_RUN}/logs"
KEYS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")


def codex_sent(records: list[dict[str, Any]]) -> dict[str, int]:
    """What the Responses server sent, in rlm's terms: input counts the cached tokens."""
    usages = [r["usage"] for r in records]
    return {"input_tokens": sum(u["input_tokens"] for u in usages),
            "cached_input_tokens": sum(u["input_tokens_details"]["cached_tokens"] for u in usages),
            "output_tokens": sum(u["output_tokens"] for u in usages),
            "reasoning_tokens": sum(u["output_tokens_details"]["reasoning_tokens"] for u in usages)}


def claude_sent(usages: list[dict[str, Any]]) -> dict[str, int]:
    """What the Messages server sent, in rlm's terms: input adds the cache reads and writes back in."""
    return {"input_tokens": sum(u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
                                for u in usages),
            "cached_input_tokens": sum(u["cache_read_input_tokens"] for u in usages),
            "output_tokens": sum(u["output_tokens"] for u in usages),
            "reasoning_tokens": 0}


def tokens(record: dict[str, Any]) -> dict[str, int]:
    return {key: record[key] for key in KEYS}


def status_usage(repo: Any) -> dict[str, Any]:
    result = repo.rlm("status", "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)["usage"]  # type: ignore[no-any-return]


def test_codex_tokens_equal_what_the_server_sent(codex_bin: str, repo: Any) -> None:
    home = repo.root / "codex-home"
    with ResponsesServer("report") as server:
        repo.write(config(codex_agent(codex_bin, server.base_url, home), CODEX_TIERS, [
            {"id": "alpha", "goal": "Map the parser.", "compute_tier": "heavy"},
            {"id": "beta", "goal": "Map the lexer."},
        ]))
        result = repo.doit()
        assert result.code == 0, result.out + result.err
    entries = repo.provenance()["tasks"]
    for worker_id, model, price in (("alpha", "gpt-5.2-codex", (1.75, 0.175, 14.0)),
                                    ("beta", "gpt-5.1-codex-mini", (0.25, 0.025, 2.0))):
        sent = codex_sent(server.for_worker(worker_id))
        recorded = entries[worker_id]["attempts"][0]["usage"]
        assert tokens(recorded) == sent, worker_id
        cost = ((sent["input_tokens"] - sent["cached_input_tokens"]) * price[0]
                + sent["cached_input_tokens"] * price[1] + sent["output_tokens"] * price[2]) / 1_000_000
        assert (recorded["cost_usd"], recorded["cost_source"], recorded["model"]) == (round(cost, 6), "prices", model)
    usage = status_usage(repo)
    assert tokens(usage["total"]) == codex_sent(server.requests)
    assert {w: tokens(t) for w, t in usage["tasks"].items()} == {
        w: codex_sent(server.for_worker(w)) for w in ("alpha", "beta")}
    # the log is readable; the raw events are next to it
    log = repo.path(f"{LOGS}/beta.attempt-1.log").read_text(encoding="utf-8")
    assert "[agent] Report written." in log
    assert '"type":"turn.completed"' in repo.path(f"{LOGS}/beta.attempt-1.events.jsonl").read_text(encoding="utf-8")


def test_claude_tokens_and_cost_equal_what_the_server_sent_and_the_cli_said(claude_bin: str, repo: Any) -> None:
    with MessagesServer("report") as server:
        agent = claude_agent(claude_bin, server.base_url, repo.root / "claude-config")
        repo.write(config(agent, CLAUDE_TIERS, [
            {"id": "alpha", "goal": "Map the parser."},
            {"id": "beta", "goal": "Map the lexer.", "compute_tier": "heavy"},
            # `--output-format json` chosen by the user: one result object at the end, with the same usage
            {"id": "gamma", "goal": "Map the printer.", "agent": {"args": ["--output-format", "json"]}},
        ]))
        result = repo.doit()
        assert result.code == 0, result.out + result.err
    entries = repo.provenance()["tasks"]
    for worker_id in ("alpha", "beta", "gamma"):
        recorded = entries[worker_id]["attempts"][0]["usage"]
        assert tokens(recorded) == claude_sent([r["usage"] for r in server.for_worker(worker_id)]), worker_id
        # the cost is claude's own figure, from its result event
        events = Path(repo.path(f"{LOGS}/{worker_id}.attempt-1.events.jsonl")).read_text(encoding="utf-8")
        result_event = [json.loads(line) for line in events.splitlines() if '"type":"result"' in line][-1]
        assert recorded["cost_usd"] == round(result_event["total_cost_usd"], 6)
        assert recorded["cost_source"] == "agent"
    usage = status_usage(repo)
    side = [r["usage"] for r in server.side_requests]  # requests with no worker's envelope count in the total
    assert tokens(usage["total"]) == claude_sent([r["usage"] for r in server.requests] + side)
    log = repo.path(f"{LOGS}/alpha.attempt-1.log").read_text(encoding="utf-8")
    assert "[tool] Write " in log and "[agent] Report written." in log


def test_a_token_budget_stops_new_codex_attempts(codex_bin: str, repo: Any) -> None:
    home = repo.root / "codex-home"
    with ResponsesServer(responses_server.report_script()) as server:
        data = config(codex_agent(codex_bin, server.base_url, home), CODEX_TIERS, [
            {"id": "a", "goal": "First."},
            {"id": "b", "goal": "Second.", "depends_on": ["a"]},
            {"id": "c", "goal": "Third.", "depends_on": ["b"]},
        ], max_inflight=1)
        data["budget"]["max_tokens"] = 1  # reached by the first attempt
        repo.write(data)
        result = repo.doit()
    assert result.code == 1
    assert {r["envelope"]["worker_id"] for r in server.requests} == {"a"}
    spent = sum(v for k, v in codex_sent(server.requests).items() if k in ("input_tokens", "output_tokens"))
    assert (f"budget exhausted: max_tokens ({spent} tokens used, limit 1); map:b not started "
            "(raise the budget in rlm.yaml to go on)") in result.out
