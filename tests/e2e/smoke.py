#!/usr/bin/env python3
"""Run the real codex / claude CLIs once each against the scripted servers and check the report got written.

    python tests/e2e/smoke.py                      # both, binaries from $RLM_AGENTS_DIR
    python tests/e2e/smoke.py --agent codex --codex /path/to/codex --script no_report --keep

The argv is the one rlm's runner builds (see rlm_tasks/agents.py), with the scripted provider in
the extra args. Exit status 0 when every check passed; 2 when a CLI is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agents
from messages_server import MessagesServer
from responses_server import ResponsesServer

REQUIRED_HEADINGS = ("## What I did", "## Key findings", "## Contract Compliance")
TIMEOUT = 60.0


def sample_prompt(root: Path, worker_id: str = "w1", run_id: str = "smoke") -> tuple[str, Path]:
    """A prompt shaped like templates/worker_prompt.md.j2 (envelope in a ```json block) and its report path."""
    report = root / ".rlm" / "runs" / run_id / "reports" / f"{worker_id}.md"
    envelope = {"run_id": run_id, "worker_id": worker_id, "mode": "map", "report_path": str(report),
                "contract_path": str(root / ".rlm" / "runs" / run_id / "contract.md"), "compute_tier": "standard"}
    prompt = (f"You are worker `{worker_id}` (map, file, tier standard) of run `{run_id}`.\n\n"
              "## Your task\nSummarise README.md.\n\n"
              f"## Your report\nWrite your narrative Markdown report to `{report}` (create directories as needed).\n"
              "Use these sections: What I did, Key findings, Evidence, Open questions / risks, "
              "Deferred opportunities, Contract Compliance.\n\n"
              f"## Envelope\n```json\n{json.dumps(envelope, indent=2)}\n```\n")
    return prompt, report


@dataclass
class Outcome:
    agent: str
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    report: Path
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def report_text(self) -> str | None:
        return self.report.read_text(encoding="utf-8") if self.report.exists() else None


def codex_argv(binary: str, root: Path, base_url: str, model: str, effort: str | None,
               sandbox: str = "workspace-write") -> list[str]:
    argv = [binary, "exec", "-m", model]
    if effort:
        argv += ["-c", f'model_reasoning_effort="{effort}"']
    argv += ["-C", str(root)]
    argv += ["--dangerously-bypass-approvals-and-sandbox"] if sandbox == "bypass" else ["--sandbox", sandbox]
    return [*argv, *agents.codex_provider_args(base_url), "-"]


def claude_argv(binary: str, model: str, permission_mode: str = "acceptEdits", effort: str | None = None) -> list[str]:
    argv = [binary, "-p", "--model", model, "--permission-mode", permission_mode]
    return argv + (["--effort", effort] if effort else [])


def _run(argv: list[str], prompt: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str, float]:
    started = time.monotonic()
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, cwd=cwd, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(prompt, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            # the whole group: the CLI's tool shells must not outlive it
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return proc.returncode, out, err, time.monotonic() - started


def run_codex(binary: str, workdir: Path, script: str = "report", model: str = "gpt-5.1-codex",
              effort: str | None = "high", sandbox: str = "workspace-write") -> Outcome:
    root, home = workdir / "repo", workdir / "codex-home"
    root.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    prompt, report = sample_prompt(root)
    with ResponsesServer(script, log_path=workdir / "codex-requests.jsonl") as server:
        argv = codex_argv(binary, root, server.base_url, model, effort, sandbox)
        env = agents.scrubbed_environ() | agents.codex_env(home)
        code, out, err, seconds = _run(argv, prompt, env, root)
        return Outcome("codex", argv, code, out, err, seconds, report, list(server.requests))


def run_claude(binary: str, workdir: Path, script: str = "report", model: str = "claude-sonnet-4-6",
               effort: str | None = "high", permission_mode: str = "acceptEdits") -> Outcome:
    root, home = workdir / "repo", workdir / "claude-config"
    root.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    prompt, report = sample_prompt(root)
    with MessagesServer(script, log_path=workdir / "claude-requests.jsonl") as server:
        argv = claude_argv(binary, model, permission_mode, effort)
        env = agents.scrubbed_environ() | agents.claude_env(server.base_url, home)
        if permission_mode == "bypassPermissions" and os.geteuid() == 0:
            env |= agents.CLAUDE_ROOT_OVERRIDE
        code, out, err, seconds = _run(argv, prompt, env, root)  # claude has no -C: cwd is the root
        return Outcome("claude", argv, code, out, err, seconds, report, list(server.requests))


def check(outcome: Outcome, script: str, model: str, effort: str | None) -> list[str]:
    """What is wrong with the outcome; empty when it is as the script says it should be."""
    problems = []
    if outcome.returncode != 0:
        problems.append(f"exit status {outcome.returncode}")
    if not outcome.requests:
        return [*problems, "the server got no request"]
    first = outcome.requests[0]
    if first["model"] != model:
        problems.append(f"model {first['model']!r}, expected {model!r}")
    if effort and first["effort"] != effort:
        problems.append(f"effort {first['effort']!r}, expected {effort!r}")
    if first["envelope"] is None or first["envelope"].get("report_path") != str(outcome.report):
        problems.append("the prompt's envelope did not reach the server")
    text = outcome.report_text
    if script == "report":
        if text is None:
            problems.append(f"no report at {outcome.report}")
        else:
            problems += [f"report lacks {h!r}" for h in REQUIRED_HEADINGS if h not in text]
        if len(outcome.requests) != 2:
            problems.append(f"{len(outcome.requests)} requests, expected 2 (tool call, then final)")
    elif script == "no_report" and text is not None:
        problems.append("a report was written although the script writes none")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", choices=["codex", "claude", "all"], default="all")
    parser.add_argument("--codex", help="codex executable (default: from $RLM_AGENTS_DIR)")
    parser.add_argument("--claude", help="claude executable (default: from $RLM_AGENTS_DIR)")
    parser.add_argument("--script", choices=["report", "no_report"], default="report")
    parser.add_argument("--sandbox", default="workspace-write",
                        help="codex: read-only | workspace-write | danger-full-access | bypass")
    parser.add_argument("--permission-mode", default="acceptEdits", help="claude --permission-mode")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and print it")
    args = parser.parse_args(argv)

    wanted = ["codex", "claude"] if args.agent == "all" else [args.agent]
    binaries = {"codex": args.codex or agents.codex_binary(), "claude": args.claude or agents.claude_binary()}
    missing = [name for name in wanted if not binaries[name]]
    for name in missing:
        print(f"SKIP {name}: {agents.skip_reason(name)}")
    workdir = Path(tempfile.mkdtemp(prefix="rlm-smoke-"))
    failed = False
    try:
        for name in wanted:
            binary = binaries[name]
            if not binary:
                continue
            if name == "codex":
                model, effort = "gpt-5.1-codex", "high"
                outcome = run_codex(binary, workdir / name, args.script, model, effort, args.sandbox)
            else:
                model, effort = "claude-sonnet-4-6", "high"
                outcome = run_claude(binary, workdir / name, args.script, model, effort, args.permission_mode)
            problems = check(outcome, args.script, model, effort)
            status = "FAIL" if problems else "ok"
            print(f"{status} {name}: exit {outcome.returncode} in {outcome.seconds:.2f}s, "
                  f"{len(outcome.requests)} requests, report {'written' if outcome.report_text else 'absent'}")
            print("  argv:", " ".join(outcome.argv))
            for problem in problems:
                print("  -", problem)
            if problems:
                failed = True
                print("  stdout:", outcome.stdout.strip()[-2000:])
                print("  stderr:", outcome.stderr.strip()[-4000:])
    finally:
        if args.keep:
            print("kept", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        return 1
    return 2 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
