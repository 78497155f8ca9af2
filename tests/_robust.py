"""Helpers of the robustness tests (retries, resume, signals, progress, detach): a tmp repo run by flaky_agent."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
AGENT = Path(__file__).resolve().parent / "fake_agents" / "flaky_agent.py"
RUN = ".rlm/runs/robust"
LOCAL = ".rlm/local/runs/robust"


def config(tasks: list[dict[str, Any]], **defaults: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "run_id": "robust",
        "goal": "Exercise failures.",
        "budget": {"max_inflight": 4},
        "agent": {
            "kind": "command",
            "command": ["{{ python }}", str(AGENT), "--model", "{{ model }}", "--effort", "{{ effort }}"],
            "env": {"FLAKY_SPEC": "spec.json", "FLAKY_RECORD": "rec"},
            "timeout": 60,
        },
        "defaults": {"backoff_seconds": 0, **defaults},
        "tasks": tasks,
    }


def make_repo(root: Path, tasks: list[dict[str, Any]], spec: dict[str, Any], **defaults: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "rlm.yaml").write_text(yaml.safe_dump(config(tasks, **defaults), sort_keys=False))
    (root / "dodo.py").write_text((ROOT / "dodo.py").read_text())
    write_spec(root, spec)
    return root


def write_spec(root: Path, spec: dict[str, Any]) -> None:
    (root / "spec.json").write_text(json.dumps(spec))


def records(root: Path, worker_id: str | None = None) -> list[dict[str, Any]]:
    """What flaky_agent recorded at each start, sorted by worker id and attempt."""
    found = []
    for path in sorted((root / "rec").glob("*.json")):
        name, attempt = path.stem.rsplit(".", 1)
        if worker_id in (None, name):
            found.append({"worker_id": name, "attempt": int(attempt), **json.loads(path.read_text())})
    return sorted(found, key=lambda r: (r["worker_id"], r["attempt"]))


def provenance(root: Path) -> dict[str, Any]:
    return json.loads((root / RUN / "provenance.json").read_text())["tasks"]


def doit_in_process(*args: str) -> int:
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from rlm_tasks.tasks import doit_namespace

    try:
        return int(DoitMain(ModuleTaskLoader(doit_namespace("rlm.yaml"))).run(list(args)))
    except SystemExit as exc:  # the run reporter sets the exit code when something failed
        return int(exc.code or 0)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def start_doit(root: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m doit` in a tmp repo, as a person runs it, in its own group so a test can signal it alone."""
    return subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=root, env={**env(), **(extra_env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def rlm(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rlm_tasks", *args], cwd=root, env=env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _only_zombies(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return False
    return True


def group_gone(pgid: int, timeout: float = 10.0) -> bool:
    """The process group has no process left: os.killpg(pgid, 0) raises ProcessLookupError.

    An orphaned group (its orchestrator was SIGKILLed) is reaped by init, which
    may take a moment; until then its members are zombies, which run nothing.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return _only_zombies(pgid)
        time.sleep(0.05)


def kill_leftovers(root: Path) -> None:
    """Test cleanup: end any group a failed test left (only the recorded worker groups of this repo)."""
    for record in records(root):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record["pgid"], signal.SIGKILL)
