"""Fixtures of the real-agent e2e tests: the pinned CLIs (skip when absent) and the scripted servers."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agents


def _absent(agent: str) -> NoReturn:
    """Skip where the CLIs were not installed; fail where .ci/run installed them (E2E_REQUIRE_AGENTS=1)."""
    if os.environ.get("E2E_REQUIRE_AGENTS") == "1":
        pytest.fail(agents.skip_reason(agent))
    pytest.skip(agents.skip_reason(agent))


@pytest.fixture(scope="session")
def codex_bin() -> str:
    binary = agents.codex_binary()
    if binary is None:
        _absent("codex")
    return binary


@pytest.fixture(scope="session")
def claude_bin() -> str:
    binary = agents.claude_binary()
    if binary is None:
        _absent("claude")
    return binary


@pytest.fixture(scope="session")
def gemini_bin() -> str:
    binary = agents.gemini_binary()
    if binary is None:
        _absent("gemini")
    return binary


@pytest.fixture(scope="session")
def opencode_bin() -> str:
    binary = agents.opencode_binary()
    if binary is None:
        _absent("opencode")
    return binary


@pytest.fixture
def agent_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop real credentials and config locations of the CLIs from os.environ.

    The runner hands its own environment (plus agent.env) to every worker, so an OPENAI_* or
    CLAUDE_* variable of the developer's shell would otherwise reach the CLIs under test.
    """
    for name in os.environ.keys() - agents.scrubbed_environ().keys():
        monkeypatch.delenv(name)
