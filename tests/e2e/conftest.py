"""Fixtures of the real-agent e2e tests: the pinned CLIs (skip when absent) and the scripted servers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agents


@pytest.fixture(scope="session")
def codex_bin() -> str:
    binary = agents.codex_binary()
    if binary is None:
        pytest.skip(agents.skip_reason("codex"))
    return binary


@pytest.fixture(scope="session")
def claude_bin() -> str:
    binary = agents.claude_binary()
    if binary is None:
        pytest.skip(agents.skip_reason("claude"))
    return binary
