"""Shared fixtures: every test runs in its own tmp dir, and nothing in-process writes outside it.

`repo` is a tmp repository with helpers to write rlm.yaml, run `rlm` and `doit`
in-process (fast) or as real subprocesses (a handful of CLI tests), and read
what the fake agent (fake_agents/fake_codex.py) recorded.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
FAKE_CODEX = Path(__file__).resolve().parent / "fake_agents" / "fake_codex.py"
RUN_ID = "t"
RUN_DIR = f".rlm/runs/{RUN_ID}"
LOCAL_RUN = f".rlm/local/runs/{RUN_ID}"  # machine-local: logs, progress, inflight, reduce_state

# ---- the write guard --------------------------------------------------------------------------------------
# An audit hook sees every in-process open-for-writing, rename, mkdir, remove, ... (subprocesses are not
# audited, so the CLI tests keep working). While a test runs, such an operation outside the test's tmp_path
# fails with PermissionError and fails the test, so no test can touch /work/main/.rlm or a home directory.

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# event → (indexes of the paths written, indexes of dir_fd arguments)
_PATH_EVENTS = {"os.mkdir": ((0,), (2,)), "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)),
                "os.chmod": ((0,), (2,)), "os.truncate": ((0,), ()), "os.utime": ((0,), (3,)),
                "shutil.rmtree": ((0,), (1,)), "sqlite3.connect": ((0,), ()), "os.rename": ((0, 1), (2, 3)),
                "os.link": ((1,), (2, 3)), "os.symlink": ((1,), (2,))}
_guard: dict[str, Any] = {"allowed": None, "violations": [], "busy": threading.local()}
_TMP = os.path.realpath(tempfile.gettempdir())


def _allowed(path: str, root: str) -> bool:
    if path == root or path.startswith(root + os.sep) or path.startswith("/dev/"):
        return True
    if f"{os.sep}__pycache__" in path:  # imports write bytecode next to the modules
        return True
    # pytest's own capture files (capfd): unnamed temporary files directly in the temp dir
    return path == _TMP or (os.path.dirname(path) == _TMP and os.path.basename(path).startswith("tmp"))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    root = _guard["allowed"]
    if root is None or getattr(_guard["busy"], "on", False):
        return
    if event == "open":
        target, mode, flags = args
        writing = bool((flags or 0) & _WRITE_FLAGS) or (isinstance(mode, str) and any(c in mode for c in "wax+"))
        targets = [target] if writing else []
    elif event in _PATH_EVENTS:
        written, dir_fds = _PATH_EVENTS[event]
        if any(i < len(args) and isinstance(args[i], int) and args[i] != -1 for i in dir_fds):
            return  # relative to a directory fd: cannot be judged here
        targets = [args[i] for i in written if i < len(args)]
    else:
        return
    _guard["busy"].on = True
    try:
        for target in targets:
            if target is None or isinstance(target, int) or target == ":memory:":
                continue
            path = os.path.realpath(os.path.abspath(os.fsdecode(target)))
            if not _allowed(path, root):
                _guard["violations"].append(f"{event} {path}")
                raise PermissionError(f"test wrote outside its tmp_path: {event} {path}")
    finally:
        _guard["busy"].on = False


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run in tmp_path; fail the test if anything in-process wrote outside it."""
    monkeypatch.chdir(tmp_path)
    _guard["violations"] = []
    _guard["allowed"] = os.path.realpath(tmp_path)
    try:
        yield
    finally:
        _guard["allowed"] = None
    violations = _guard["violations"]
    assert not violations, f"writes outside tmp_path: {violations}"


# ---- running the tool -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    env.pop("RLM_CONFIG", None)
    env.update(extra)
    return env


def codex_config(log: Path, tasks: list[dict[str, Any]], *, mode: str = "ok", **top: Any) -> dict[str, Any]:
    """A run whose agent is the fake codex; `mode` is FAKE_AGENT_MODE (see fake_codex.py)."""
    agent = {"kind": "codex", "binary": str(FAKE_CODEX), "timeout": 30,
             "env": {"FAKE_AGENT_LOG": str(log), "FAKE_AGENT_MODE": mode}}
    agent.update(top.pop("agent", {}))
    return {"version": 1, "run_id": RUN_ID, "goal": "Exercise the core runner.", "agent": agent,
            "tasks": tasks, **top}


class Repo:
    """A tmp repository with an rlm.yaml, and ways to run the tool in it."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.log = root / "agent-log.jsonl"

    # files
    def write(self, data: dict[str, Any] | str, name: str = "rlm.yaml") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def write_codex(self, tasks: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        data = codex_config(self.log, tasks, **kw)
        self.write(data)
        return data

    def path(self, rel: str) -> Path:
        return self.root / rel

    def report(self, task_id: str) -> Path:
        return self.root / RUN_DIR / "artifacts" / "reports" / f"{task_id}.md"

    def provenance(self) -> dict[str, Any]:
        return json.loads((self.root / RUN_DIR / "provenance.json").read_text(encoding="utf-8"))

    def calls(self) -> list[dict[str, Any]]:
        """What the fake agent recorded, one dict per start, in start order."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]

    def ran(self) -> list[str]:
        return sorted(call["worker_id"] for call in self.calls())

    @staticmethod
    def stdin_of(call: dict[str, Any]) -> bytes:
        return base64.b64decode(call["stdin_b64"])

    # in-process
    def _drain(self) -> None:
        self.capsys.readouterr()

    def rlm(self, *args: str) -> Result:
        from rlm_tasks.cli.main import main

        self.monkeypatch.chdir(self.root)
        self._drain()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def doit(self, *args: str, config: str = "rlm.yaml") -> Result:
        """`doit` in-process, as dodo.py would run it: DoitMain over doit_namespace(rlm.yaml)."""
        from doit.cmd_base import ModuleTaskLoader
        from doit.doit_cmd import DoitMain

        from rlm_tasks.tasks import doit_namespace

        self.monkeypatch.chdir(self.root)
        self._drain()
        try:
            code = int(DoitMain(ModuleTaskLoader(doit_namespace(config))).run(list(args)))
        except SystemExit as exc:  # invalid config (2), the lock (3), failed workers (1)
            code = int(exc.code or 0)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    # real CLI
    def doit_cli(self, *args: str, timeout: float = 60, cwd: Path | None = None) -> Result:
        proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=cwd or self.root, env=subprocess_env(),
                              capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def rlm_cli(self, *args: str, timeout: float = 60, cwd: Path | None = None) -> Result:
        proc = subprocess.run([sys.executable, "-m", "rlm_tasks", *args], cwd=cwd or self.root,
                              env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Repo:
    monkeypatch.delenv("RLM_CONFIG", raising=False)
    monkeypatch.delenv("RLM_ADOPT", raising=False)
    return Repo(tmp_path, monkeypatch, capsys)
