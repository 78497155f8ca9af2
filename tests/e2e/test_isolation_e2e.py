"""The real codex CLI edits a file in its own worktree (isolation: worktree) against the scripted loopback server;
rlm gates the change and merges it into the main tree."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import responses_server
from conftest import RUN_DIR
from responses_server import ResponsesServer
from test_runner_e2e import CODEX_TIERS, codex_agent, config, install_skills

pytestmark = [pytest.mark.usefixtures("agent_environ"), pytest.mark.slow]


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def edit_and_report(record: dict[str, Any]) -> responses_server.Turn:
    """Turn 1: one shell call that appends to notes.txt in the working directory and writes the report."""
    if record["has_tool_output"]:
        return responses_server.Turn(text=responses_server.FINAL_TEXT)
    envelope = record["envelope"] or {}
    text = responses_server.DEFAULT_REPORT.format_map({k: envelope.get(k, "") for k in ("worker_id", "run_id",
                                                                                          "mode")})
    command = "echo 'edited by codex' >> notes.txt\n" + responses_server.write_command(envelope["report_path"], text)
    return responses_server.Turn(call=responses_server.shell_call(record["tools"], command))


def test_codex_edits_a_file_in_its_worktree_and_the_change_merges(codex_bin: str, repo: Any) -> None:
    _git(repo.root, "init", "-q")
    repo.write("/.rlm/local/\n/codex-home/\n/unused-claude-config/\n", ".gitignore")
    repo.write("first line\n", "notes.txt")
    _git(repo.root, "add", "-A")
    _git(repo.root, "commit", "-qm", "base")
    home = repo.root / "codex-home"
    with ResponsesServer(edit_and_report) as server:
        install_skills(repo, codex_home=home)
        data = config(codex_agent(codex_bin, server.base_url, home), CODEX_TIERS, [
            {"id": "edit", "goal": "Append a line to notes.txt.", "isolation": "worktree", "owns": ["notes.txt"],
             "expects_changes": True, "gate": ["grep -q 'edited by codex' notes.txt"]}])
        repo.write(data)
        result = repo.doit()
        assert result.code == 0, result.out + result.err
        assert repo.path("notes.txt").read_text() == "first line\nedited by codex\n"
        entry = repo.provenance()["tasks"]["edit"]
        info = entry["isolation"]
        assert info["merged"] is True and info["changed"] == 1
        assert info["patch"] == f"{RUN_DIR}/artifacts/patches/edit.attempt-1.patch"
        assert "+edited by codex" in repo.path(info["patch"]).read_text()
        assert repo.report("edit").is_file()
        # codex ran with the worktree as its root
        (first, *_) = server.for_worker("edit")
        assert first["envelope"]["report_path"] == f"{RUN_DIR}/artifacts/reports/edit.md"
        assert not repo.path(".rlm/local/worktrees/t/edit.attempt-1").exists()
        before = len(server.requests)
        assert repo.doit().code == 0  # fresh: nothing runs, nothing merges again
        assert len(server.requests) == before
        assert repo.path("notes.txt").read_text() == "first line\nedited by codex\n"
