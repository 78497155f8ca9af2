"""The runner end to end with the real Gemini CLI and opencode against scripted loopback servers.

gemini talks to a scripted Gemini API (gemini_server: streamGenerateContent) through
``GOOGLE_GEMINI_BASE_URL``; opencode to the scripted Responses API (responses_server) as a custom
provider (``@ai-sdk/openai`` with its ``baseURL``), given inline in ``OPENCODE_CONFIG_CONTENT``. Each CLI
gets a throwaway home. The tokens rlm records per attempt, per task and in total must be exactly what the
server sent; the skills are installed where each CLI looks and reach the model. Skipped unless the pinned
CLIs are installed (tests/e2e/install_agents.sh); failed instead when CI installed them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import agents
import pytest
import responses_server
from conftest import LOCAL_RUN, RUN_DIR
from gemini_server import GeminiServer
from responses_server import ResponsesServer
from test_runner_e2e import TIMEOUT, assert_fresh_and_quiet_on_rerun, assert_prompts_arrived_intact, config

from rlm_tasks.agents import KINDS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("agent_environ")]

LOGS = f"{LOCAL_RUN}/logs"
KEYS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
GEMINI_TIERS = {"standard": {"model": "gemini-2.5-flash"}, "heavy": {"model": "gemini-2.5-pro"}}
OPENCODE_MODELS = ("m-small", "m-large")
OPENCODE_TIERS = {"standard": {"model": f"{agents.OPENCODE_PROVIDER}/m-small"},
                  "heavy": {"model": f"{agents.OPENCODE_PROVIDER}/m-large", "effort": "high"}}


def tokens(record: dict[str, Any]) -> dict[str, int]:
    return {key: record[key] for key in KEYS}


def gemini_sent(records: list[dict[str, Any]]) -> dict[str, int]:
    """What the Gemini server sent, in rlm's terms: input counts the cached tokens, output the thoughts."""
    usages = [r["usage"] for r in records]
    thoughts = sum(u["thoughtsTokenCount"] for u in usages)
    return {"input_tokens": sum(u["promptTokenCount"] for u in usages),
            "cached_input_tokens": sum(u["cachedContentTokenCount"] for u in usages),
            "output_tokens": sum(u["candidatesTokenCount"] for u in usages) + thoughts,
            "reasoning_tokens": thoughts}


def responses_sent(records: list[dict[str, Any]]) -> dict[str, int]:
    usages = [r["usage"] for r in records]
    return {"input_tokens": sum(u["input_tokens"] for u in usages),
            "cached_input_tokens": sum(u["input_tokens_details"]["cached_tokens"] for u in usages),
            "output_tokens": sum(u["output_tokens"] for u in usages),
            "reasoning_tokens": sum(u["output_tokens_details"]["reasoning_tokens"] for u in usages)}


def priced(sent: dict[str, int], price: tuple[float, float, float]) -> float:
    return round(((sent["input_tokens"] - sent["cached_input_tokens"]) * price[0]
                  + sent["cached_input_tokens"] * price[1] + sent["output_tokens"] * price[2]) / 1_000_000, 6)


def install_skills(repo: Any, option: str, where: Path) -> None:
    result = repo.rlm("skills", "install", option, str(where))
    assert result.code == 0, result.out + result.err


def status_usage(repo: Any) -> dict[str, Any]:
    result = repo.rlm("status", "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)["usage"]  # type: ignore[no-any-return]


# ---- gemini -----------------------------------------------------------------------------------------------

def gemini_agent(binary: str, base_url: str, home: Path) -> dict[str, Any]:
    return {"kind": "gemini", "binary": binary, "env": agents.gemini_env(base_url, home), "timeout": TIMEOUT}


def test_gemini_runs_the_tasks_and_its_tokens_are_what_the_server_sent(gemini_bin: str, repo: Any) -> None:
    home = repo.root / "gemini-home"
    with GeminiServer("report") as server:
        repo.write(config(gemini_agent(gemini_bin, server.base_url, home), GEMINI_TIERS, [
            {"id": "alpha", "goal": "Map the parser.", "compute_tier": "heavy"},
            {"id": "beta", "goal": "Map the lexer."},
        ]))
        install_skills(repo, "--gemini-dir", home / ".gemini")
        result = repo.doit()
        assert result.code == 0, result.out + result.err
        assert "map-worker skill is not installed" not in result.out
        assert {r["model"] for r in server.for_worker("alpha")} == {"gemini-2.5-pro"}
        assert {r["model"] for r in server.for_worker("beta")} == {"gemini-2.5-flash"}
        assert_prompts_arrived_intact(repo, server, ["alpha", "beta"])
        # the skill gemini found in its home reached the model, with its description
        assert all("map-worker" in json.dumps(body.get("systemInstruction")) for body in server.bodies)
        entries = repo.provenance()["tasks"]
        for worker_id, model in (("alpha", "gemini-2.5-pro"), ("beta", "gemini-2.5-flash")):
            sent = gemini_sent(server.for_worker(worker_id))
            recorded = entries[worker_id]["attempts"][0]["usage"]
            assert tokens(recorded) == sent, worker_id
            assert (recorded["cost_usd"], recorded["cost_source"], recorded["model"]) == \
                (priced(sent, KINDS["gemini"].PRICES[model]), "prices", model)
        usage = status_usage(repo)
        assert tokens(usage["total"]) == gemini_sent(server.requests)
        log = repo.path(f"{LOGS}/beta.attempt-1.log").read_text(encoding="utf-8")
        assert "[tool] write_file " in log and "[agent] Report written." in log and "[result] success" in log
        assert_fresh_and_quiet_on_rerun(repo, server, 2)


def test_gemini_read_only_refuses_the_write_and_the_task_fails(gemini_bin: str, repo: Any) -> None:
    home = repo.root / "gemini-home"
    with GeminiServer("report") as server:
        agent = {**gemini_agent(gemini_bin, server.base_url, home), "sandbox": "read-only"}
        repo.write(config(agent, GEMINI_TIERS, [{"id": "alpha", "goal": "Map the parser."}]))
        result = repo.doit()
    assert result.code == 1, result.out
    assert not repo.path(f"{RUN_DIR}/artifacts/reports/alpha.md").exists()
    log = repo.path(f"{LOGS}/alpha.attempt-1.log").read_text(encoding="utf-8")
    assert "[tool error] Tool execution denied by policy. You are in Plan Mode" in log
    assert len(server.requests) == 2  # the denial went back to the model, which ended the turn


def test_gemini_api_error_fails_the_task_and_its_events_say_why(gemini_bin: str, repo: Any) -> None:
    home = repo.root / "gemini-home"
    with GeminiServer("fail") as server:
        repo.write(config(gemini_agent(gemini_bin, server.base_url, home), GEMINI_TIERS,
                          [{"id": "alpha", "goal": "Map the parser."}]))
        result = repo.doit()
    assert result.code == 1, result.out
    log = repo.path(f"{LOGS}/alpha.attempt-1.log").read_text(encoding="utf-8")
    assert "[result] error" in log and "scripted failure" in log


# ---- opencode ---------------------------------------------------------------------------------------------

def opencode_script(record: dict[str, Any]) -> responses_server.Turn:
    """Turn 1 calls opencode's `write` tool with the envelope's report_path; then a final text."""
    if record["has_tool_output"]:
        return responses_server.Turn(text=responses_server.FINAL_TEXT)
    envelope = record["envelope"] or {}
    if "report_path" not in envelope:
        return responses_server.Turn(text="No envelope; nothing written.")
    text = responses_server.DEFAULT_REPORT.format_map({k: envelope.get(k, "") for k in ("worker_id", "run_id",
                                                                                        "mode")})
    return responses_server.Turn(call=("write", json.dumps({"filePath": envelope["report_path"], "content": text})))


def opencode_agent(binary: str, base_url: str, home: Path) -> dict[str, Any]:
    """The agent block, its home's database made first: two opencode processes starting at once on a fresh
    data directory race creating it (opencode 1.18.33 fails one with `Failed query: CREATE TABLE`)."""
    env = agents.opencode_env(base_url, home, list(OPENCODE_MODELS))
    made = subprocess.run([binary, "session", "list"], env={**os.environ, **env}, capture_output=True, timeout=TIMEOUT)
    assert made.returncode == 0, made.stderr
    return {"kind": "opencode", "binary": binary, "env": env, "timeout": 2 * TIMEOUT}


def test_opencode_runs_the_tasks_and_its_tokens_are_what_the_server_sent(opencode_bin: str, repo: Any) -> None:
    home = repo.root / "opencode-home"
    with ResponsesServer(opencode_script) as server:
        repo.write(config(opencode_agent(opencode_bin, server.base_url, home), OPENCODE_TIERS, [
            {"id": "alpha", "goal": "Map the parser.", "compute_tier": "heavy"},
            {"id": "beta", "goal": "Map the lexer."},
        ]))
        install_skills(repo, "--opencode-dir", home / "opencode")
        result = repo.doit()
        assert result.code == 0, result.out + result.err
        assert "map-worker skill is not installed" not in result.out
        assert {(r["model"], r["effort"]) for r in server.for_worker("alpha")} == {("m-large", "high")}
        assert {r["model"] for r in server.for_worker("beta")} == {"m-small"}
        assert_prompts_arrived_intact(repo, server, ["alpha", "beta"])
        assert all("<name>map-worker</name>" in json.dumps(body) for body in server.bodies)
        assert all(r["envelope"] for r in server.requests), "a side request (a session title) reached the model"
        entries = repo.provenance()["tasks"]
        for worker_id in ("alpha", "beta"):
            recorded = entries[worker_id]["attempts"][0]["usage"]
            assert tokens(recorded) == responses_sent(server.for_worker(worker_id)), worker_id
            assert recorded["cost_source"] == "unknown"  # a model neither opencode nor rlm has a price for
        usage = status_usage(repo)
        assert tokens(usage["total"]) == responses_sent(server.requests)
        log = repo.path(f"{LOGS}/beta.attempt-1.log").read_text(encoding="utf-8")
        assert "[tool] write " in log and "[agent] Report written." in log and "[step] stop" in log
        assert_fresh_and_quiet_on_rerun(repo, server, 2)


def test_opencode_read_only_runs_its_plan_agent_and_the_write_is_refused(opencode_bin: str, repo: Any) -> None:
    home = repo.root / "opencode-home"
    with ResponsesServer(opencode_script) as server:
        agent = {**opencode_agent(opencode_bin, server.base_url, home), "sandbox": "read-only"}
        repo.write(config(agent, OPENCODE_TIERS, [{"id": "alpha", "goal": "Map the parser."}]))
        result = repo.doit()
    assert result.code == 1, result.out
    assert not repo.path(f"{RUN_DIR}/artifacts/reports/alpha.md").exists()
    log = repo.path(f"{LOGS}/alpha.attempt-1.log").read_text(encoding="utf-8")
    assert "[tool error] The user has specified a rule which prevents you from using this specific tool call" in log
