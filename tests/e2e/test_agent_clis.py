"""The real codex / claude CLIs against the scripted model servers: the contract rlm's runner relies on.

Each test runs one CLI once (about a second). Skipped unless the pinned CLIs are installed
(tests/e2e/install_agents.sh).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke import REQUIRED_HEADINGS, check, run_claude, run_codex

pytestmark = pytest.mark.slow  # see CONTRIBUTING.md: the fast subset


def test_codex_writes_the_report_through_its_shell_tool(codex_bin: str, tmp_path: Path) -> None:
    outcome = run_codex(codex_bin, tmp_path, "report", model="gpt-5.1-codex", effort="high")
    assert check(outcome, "report", "gpt-5.1-codex", "high") == []
    first, second = outcome.requests
    assert "exec_command" in first["tools"]
    assert "## Envelope" in first["prompt"]
    assert second["has_tool_output"] and "exited with code 0" in second["tool_output"]
    assert outcome.stdout.strip() == "Report written."  # codex exec prints only the last message on stdout


def test_codex_without_effort_sends_no_effort(codex_bin: str, tmp_path: Path) -> None:
    outcome = run_codex(codex_bin, tmp_path, "no_report", model="gpt-5", effort=None)
    assert check(outcome, "no_report", "gpt-5", None) == []
    assert outcome.requests[0]["effort"] is None


def test_codex_no_report_exits_zero_without_a_report(codex_bin: str, tmp_path: Path) -> None:
    outcome = run_codex(codex_bin, tmp_path, "no_report")
    assert outcome.returncode == 0
    assert outcome.report_text is None
    assert len(outcome.requests) == 1


def test_codex_read_only_sandbox_blocks_the_report_but_exits_zero(codex_bin: str, tmp_path: Path) -> None:
    outcome = run_codex(codex_bin, tmp_path, "report", sandbox="read-only")
    assert outcome.returncode == 0
    assert outcome.report_text is None
    assert "Read-only file system" in outcome.requests[1]["tool_output"]


def test_codex_api_error_exits_one_at_once(codex_bin: str, tmp_path: Path) -> None:
    outcome = run_codex(codex_bin, tmp_path, "fail")
    assert outcome.returncode == 1
    assert len(outcome.requests) == 1
    assert "scripted failure" in outcome.stderr


def test_claude_writes_the_report_with_its_write_tool(claude_bin: str, tmp_path: Path) -> None:
    outcome = run_claude(claude_bin, tmp_path, "report", model="claude-sonnet-4-6", effort="high")
    assert check(outcome, "report", "claude-sonnet-4-6", "high") == []
    assert {"Write", "Bash"} <= set(outcome.requests[0]["tools"])
    assert outcome.requests[1]["tool_result"].startswith("File created successfully")
    assert outcome.stdout.strip() == "Report written."


def test_claude_writes_the_report_with_bash_in_accept_edits(claude_bin: str, tmp_path: Path) -> None:
    outcome = run_claude(claude_bin, tmp_path, "report_bash")
    assert outcome.returncode == 0
    text = outcome.report_text
    assert text is not None and all(heading in text for heading in REQUIRED_HEADINGS)


def test_claude_no_report(claude_bin: str, tmp_path: Path) -> None:
    outcome = run_claude(claude_bin, tmp_path, "no_report")
    assert outcome.returncode == 0
    assert outcome.report_text is None


def test_claude_plan_mode_refuses_the_write(claude_bin: str, tmp_path: Path) -> None:
    outcome = run_claude(claude_bin, tmp_path, "report", permission_mode="plan")
    assert outcome.returncode == 0
    assert outcome.report_text is None
    assert "plan mode" in outcome.requests[1]["tool_result"]


def test_claude_api_error_exits_one(claude_bin: str, tmp_path: Path) -> None:
    outcome = run_claude(claude_bin, tmp_path, "fail")
    assert outcome.returncode == 1
    assert "API Error: 400" in outcome.stdout  # claude -p prints API errors on stdout, not stderr
