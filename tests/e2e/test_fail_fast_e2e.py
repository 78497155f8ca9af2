"""Fail fast with the real codex and claude CLIs: each is checked once before the first attempt, and attempts
failing in a row with one cause, classified from the CLI's own structured events, stop the run in one line.

Two loopback endpoints: a port nobody listens on (connection refused) and a scripted server that answers
every model request with HTTP 500. Skipped unless the pinned CLIs are installed (tests/e2e/install_agents.sh).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import agents
import pytest
from conftest import LOCAL_RUN, RUN_DIR
from messages_server import MessagesServer
from responses_server import ResponsesServer

pytestmark = pytest.mark.usefixtures("agent_environ")

CODEX_TIERS = {"standard": {"model": "gpt-5.1-codex-mini", "effort": "medium"}}
CLAUDE_TIERS = {"standard": {"model": "claude-sonnet-4-6", "effort": "low"}}
TASKS = [{"id": f"t{i}", "goal": f"Task {i}."} for i in range(1, 5)]


def refused_url() -> str:
    """A loopback address that refuses connections: a port that was free a moment ago and has no listener."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def codex_agent(binary: str, base_url: str, home: Path, timeout: float) -> dict[str, Any]:
    home.mkdir(parents=True, exist_ok=True)
    return {"kind": "codex", "binary": binary, "args": agents.codex_provider_args(base_url),
            "env": agents.codex_env(home), "timeout": timeout}


def claude_agent(binary: str, base_url: str, config_dir: Path) -> dict[str, Any]:
    config_dir.mkdir(parents=True, exist_ok=True)
    return {"kind": "claude", "binary": binary, "env": {**agents.claude_env(base_url, config_dir),
                                                        **agents.CLAUDE_ROOT_OVERRIDE}, "timeout": 60}


def run(repo: Any, agent: dict[str, Any], tiers: dict[str, Any]) -> Any:
    repo.write({"version": 1, "run_id": "t", "goal": "Fail fast.", "agent": agent, "tiers": tiers,
                "budget": {"max_inflight": 1, "stop_after_same_failures": 2}, "tasks": TASKS})
    return repo.doit("-n", "1")


def assert_stopped(repo: Any, result: Any, cause: str, text: str) -> None:
    """Two attempts failed with `cause`, said on their FAILED lines; the run stopped in one line, no third start."""
    failed = [line for line in result.lines if line.startswith("  FAILED  ")]
    assert [line.split(":", 2)[1] for line in failed] == ["t1", "t2"], result.out
    assert all(f"({text}); log: " in line for line in failed), failed
    stopped = [line for line in result.lines if line.startswith("  STOPPED ")]
    assert len(stopped) == 1 and stopped[0].startswith(
        f"  STOPPED map:t3: stopped: 2 attempts in a row failed with the same cause: {text} "), result.out
    assert result.lines[-1].startswith(f"rlm: stopped: 2 attempts in a row failed with the same cause: {text}; "
                                       "0 ran, 2 failed, 2 not started (stopped), 0 fresh in "), result.out
    for task_id in ("t1", "t2"):
        record = json.loads(repo.path(f"{RUN_DIR}/artifacts/attempts/{task_id}.json").read_text())["attempts"][-1]
        assert record["cause"] == cause, record
    assert not repo.path(f"{RUN_DIR}/artifacts/attempts/t3.json").exists()
    status = repo.rlm("status")
    assert f"({text}); log: {LOCAL_RUN}/logs/t1.attempt-1.log" in status.out, status.out


def test_codex_against_an_endpoint_that_refuses_connections(codex_bin: str, repo: Any) -> None:
    # codex keeps reconnecting (`waiting for network`) until the attempt's timeout ends it
    result = run(repo, codex_agent(codex_bin, refused_url(), repo.root / "codex-home", timeout=6), CODEX_TIERS)
    assert result.code == 1, result.out + result.err
    assert_stopped(repo, result, "network", "model endpoint unreachable")


def test_codex_against_an_endpoint_that_returns_an_error(codex_bin: str, repo: Any) -> None:
    with ResponsesServer("error") as server:
        result = run(repo, codex_agent(codex_bin, server.base_url, repo.root / "codex-home", timeout=60),
                     CODEX_TIERS)
    assert result.code == 1, result.out + result.err
    assert_stopped(repo, result, "server", "model server error")


def test_claude_against_an_endpoint_that_refuses_connections(claude_bin: str, repo: Any) -> None:
    result = run(repo, claude_agent(claude_bin, refused_url(), repo.root / "claude-config"), CLAUDE_TIERS)
    assert result.code == 1, result.out + result.err
    assert_stopped(repo, result, "network", "model endpoint unreachable")


def test_claude_against_an_endpoint_that_returns_an_error(claude_bin: str, repo: Any) -> None:
    with MessagesServer("error") as server:
        result = run(repo, claude_agent(claude_bin, server.base_url, repo.root / "claude-config"), CLAUDE_TIERS)
    assert result.code == 1, result.out + result.err
    assert_stopped(repo, result, "server", "model server error")


@pytest.mark.parametrize("kind", ["codex", "claude"])
def test_a_missing_cli_is_one_line_before_any_worker(repo: Any, kind: str) -> None:
    missing = str(repo.root / "bin" / kind)
    agent = {"kind": kind, "binary": missing}
    repo.write({"version": 1, "run_id": "t", "goal": "Fail fast.", "agent": agent, "tasks": TASKS})
    result = repo.doit()
    assert (result.code, result.err) == (
        2, f"rlm.yaml: agent check failed for map:t1: agent executable '{missing}' does not exist; "
           "no worker started\n")
