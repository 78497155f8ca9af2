"""The one test harness: every test runs in its own tmp dir, and nothing in-process writes outside it.

`repo` is a tmp repository with helpers to write rlm.yaml, run `rlm` and `doit`
in-process (fast) or as real subprocesses (CLI, signal and detach tests), start
a background `doit`, wait for a condition, and read provenance and what the fake
agent (fake_agent.py, one script with modes) recorded. At the end of a test it
ends what the test left running: only processes it can prove are the recorded ones.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import state_schemas
import yaml

REPO = Path(__file__).resolve().parent.parent
FAKE_AGENT = Path(__file__).resolve().parent / "fake_agent.py"
FAKE_CODEX = FAKE_AGENT  # the same script: it behaves as codex when called with codex's argv
FAKE_CODEX_HOME = Path(__file__).resolve().parent / "fake_codex_home"  # has the map-worker skill: no warning
RUN_ID = "t"
RUN_DIR = f".rlm/runs/{RUN_ID}"
LOCAL_RUN = f".rlm/local/runs/{RUN_ID}"  # machine-local: logs, progress, inflight, reduce_state
# A caller's RLM_* variables (a user's RLM_CONFIG, a CI knob) would reach every worker and change what tests
# see: the suite starts from none, and tests set the ones they mean.
for _name in [name for name in os.environ if name.startswith("RLM_")]:
    del os.environ[_name]
KILL_GRACE = "0.2"  # RLM_KILL_GRACE_SECONDS in tests: a worker ignoring SIGTERM costs 0.2 s, not 3 s

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
_NO_FOLLOW = {"os.remove", "os.rename", "os.rmdir", "os.symlink", "os.link", "os.mkdir"}
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
            path = os.path.abspath(os.fsdecode(target))
            if event in _NO_FOLLOW:  # acts on a symlink itself, not on what it points to
                path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
            else:
                path = os.path.realpath(path)
            if not _allowed(path, root):
                _guard["violations"].append(f"{event} {path}")
                raise PermissionError(f"test wrote outside its tmp_path: {event} {path}")
    finally:
        _guard["busy"].on = False


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """Run in tmp_path; fail the test if anything in-process wrote outside it, or any JSON file rlm wrote under
    `.rlm/` breaks its schema (tests/state_schemas.py)."""
    monkeypatch.chdir(tmp_path)
    _guard["violations"] = []
    _guard["allowed"] = os.path.realpath(tmp_path)
    try:
        yield
    finally:
        _guard["allowed"] = None
    violations = _guard["violations"]
    assert not violations, f"writes outside tmp_path: {violations}"
    if request.node.get_closest_marker("hand_made_state") is None:
        bad = state_schemas.problems(tmp_path)
        assert not bad, "state files that break their schema:\n" + "\n".join(bad)


@pytest.fixture(autouse=True)
def _collector_left_on():
    """A run turns the garbage collector off while it loads: fail a test after which it stayed off."""
    yield
    if not gc.isenabled():
        gc.enable()  # the next test starts as it should
        pytest.fail("the garbage collector was left disabled (a run's load or close leaked it)")


@contextlib.contextmanager
def doit_namespace(config: str = "rlm.yaml") -> Iterator[dict[str, Any]]:
    """What dodo.py hands doit (tasks.doit_namespace), from a run closed afterwards as the process's end would."""
    from rlm_tasks.tasks import load_run, run_namespace

    run = load_run(config)
    try:
        yield run_namespace(run)
    finally:
        run.close()


# ---- waiting ----------------------------------------------------------------------------------------------

def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll `condition` until it is true; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def group_gone(pgid: int, timeout: float = 10.0) -> bool:
    """No process of the group runs any more (zombies waiting for init to reap them run nothing)."""
    from rlm_tasks.run.worker import group_alive

    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def process_gone(pid: int, timeout: float = 10.0) -> bool:
    """The process no longer runs: it does not exist, or it is a zombie waiting to be reaped."""
    from rlm_tasks.procs import pid_alive

    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def process_reaped(pid: int, timeout: float = 10.0) -> bool:
    """Linux: not running and not a zombie either, ended and reaped (a zombie of this process would stay forever)."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def read_json_or(path: Path, default: Any) -> Any:
    """A JSON file another process may be writing right now: `default` until it exists and parses."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return default


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
    env.pop("RLM_ADOPT", None)
    env["RLM_KILL_GRACE_SECONDS"] = KILL_GRACE
    env.update(extra)
    return env


def agent_config(log: Path, tasks: list[dict[str, Any]], *, kind: str = "codex", mode: str = "ok",
                 spec: Path | None = None, **top: Any) -> dict[str, Any]:
    """A run whose agent is the fake agent: as codex (its argv) or as a `kind: command` worker.

    `mode` is FAKE_AGENT_MODE and `spec` the FAKE_AGENT_SPEC file (see fake_agent.py).
    """
    env = {"FAKE_AGENT_LOG": str(log), "FAKE_AGENT_MODE": mode}
    if spec is not None:
        env["FAKE_AGENT_SPEC"] = str(spec)
    if kind == "codex":
        agent: dict[str, Any] = {"kind": "codex", "binary": str(FAKE_AGENT), "timeout": 30,
                                 "env": {**env, "CODEX_HOME": str(FAKE_CODEX_HOME)}}
    else:
        agent = {"kind": "command", "timeout": 60, "env": env,
                 "command": ["{{ python }}", str(FAKE_AGENT), "--model", "{{ model }}", "--effort", "{{ effort }}"]}
    overrides = top.pop("agent", {})
    agent["env"] = {**agent["env"], **overrides.pop("env", {})}
    agent.update(overrides)
    return {"version": 1, "run_id": RUN_ID, "goal": "Exercise the core runner.", "agent": agent,
            "tasks": tasks, **top}


def codex_config(log: Path, tasks: list[dict[str, Any]], *, mode: str = "ok", **top: Any) -> dict[str, Any]:
    """A run whose agent is the fake agent as codex; `mode` is FAKE_AGENT_MODE (see fake_agent.py)."""
    return agent_config(log, tasks, mode=mode, **top)


HOLD_LOCK = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from rlm_tasks.layout import RunLayout
    from rlm_tasks.lifecycle.runlock import RunLock
    lock = RunLock(RunLayout(Path(sys.argv[1]), sys.argv[2]))
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes stdin (or kills us)
    lock.release()
""")


class LockHolder:
    """Another process holding a run's lock (started by Repo.hold_lock)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        """It releases the lock and ends."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.end()

    def crash(self) -> None:
        """SIGKILL: it ends holding the lock, leaving its holder record behind."""
        self.proc.kill()
        self.end()

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


class Background:
    """A process started by the test, its stdout and stderr read line by line as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait_line(self, start: str, timeout: float = 30.0) -> None:
        """Wait until a line of its output starts with `start`."""
        try:
            wait_for(lambda: any(line.startswith(start) for line in list(self.lines)), f"a line {start!r}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; output so far:\n{self.out}") from None

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        """Wait until it ends and its output is read: (exit code, output)."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code, self.out


class Repo:
    """A tmp repository with an rlm.yaml, and ways to run the tool in it."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.log = root / "agent-log.jsonl"
        self.spec_path = root / "agent-spec.json"
        self.run_dir = root / RUN_DIR
        self.local_dir = root / LOCAL_RUN
        self.started: list[Background] = []
        self.holders: list[LockHolder] = []

    # files
    def write(self, data: dict[str, Any] | str, name: str = "rlm.yaml") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def write_codex(self, tasks: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        """rlm.yaml with the fake agent as codex; FAKE_AGENT_MODE `mode` (e.g. "ok", "slow=hang")."""
        data = agent_config(self.log, tasks, spec=self.spec_path, **kw)
        self.write(data)
        return data

    def write_command(self, tasks: list[dict[str, Any]], spec: dict[str, Any] | None = None,
                      **top: Any) -> dict[str, Any]:
        """rlm.yaml with the fake agent as a `kind: command` worker (argv `--model M --effort E`), no backoff,
        4 at a time; `spec` is what each worker does (see fake_agent.py), `top` the other top-level keys."""
        top.setdefault("budget", {"max_inflight": 4})
        top["defaults"] = {"backoff_seconds": 0, **top.get("defaults", {})}
        data = agent_config(self.log, tasks, kind="command", spec=self.spec_path, **top)
        self.write(data)
        self.agent_spec(spec or {})
        return data

    def agent_spec(self, spec: dict[str, Any]) -> None:
        """What each worker does from its next start on: {"<worker_id>" | "*": behaviour} (see fake_agent.py)."""
        self.spec_path.write_text(json.dumps(spec), encoding="utf-8")

    def path(self, rel: str) -> Path:
        return self.root / rel

    def report(self, task_id: str) -> Path:
        return self.run_dir / "artifacts" / "reports" / f"{task_id}.md"

    def provenance(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "provenance.json").read_text(encoding="utf-8"))

    def tasks_done(self) -> dict[str, Any]:
        """provenance.json's tasks with its journal replayed (what a run in another process has recorded so far),
        or {} while there is neither."""
        from rlm_tasks.state.provenance import ProvenanceError, ProvenanceStore

        try:
            return ProvenanceStore(self.run_dir / "provenance.json", RUN_ID).entries()
        except ProvenanceError:  # provenance.json is replaced atomically, so only a journal line in flight
            return {}

    def inflight(self) -> dict[str, Any]:
        return json.loads((self.local_dir / "inflight.json").read_text(encoding="utf-8"))

    def inflight_entries(self) -> list[dict[str, Any]]:
        """The workers inflight.json lists as running, or [] while there is none."""
        data = read_json_or(self.local_dir / "inflight.json", {})
        return list(data.get("entries", []))

    def calls(self) -> list[dict[str, Any]]:
        """What the fake agent recorded, one dict per start, in start order."""
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines(keepends=True)
        return [json.loads(line) for line in lines if line.endswith("\n")]  # a line being written is not yet one

    def records(self, worker_id: str | None = None) -> list[dict[str, Any]]:
        """The fake agent's starts (of one worker), sorted by worker id and attempt."""
        found = [call for call in self.calls() if worker_id in (None, call["worker_id"])]
        return sorted(found, key=lambda call: (call["worker_id"], call["attempt"]))

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
        """`doit` in-process, as dodo.py would run it: DoitMain loading doit_namespace(rlm.yaml) inside the command."""
        from doit.doit_cmd import DoitMain

        from rlm_tasks.tasks import RlmTaskLoader

        self.monkeypatch.chdir(self.root)
        self._drain()
        loader = RlmTaskLoader(config)
        try:
            code = int(DoitMain(loader).run(list(args)))
        except SystemExit as exc:  # invalid config (2), the lock (3), failed workers (1)
            code = int(exc.code or 0)
        finally:
            loader.close()  # as `rlm run` does: nothing of the run stays in this process
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    # real CLI
    def dodo(self, root: Path | None = None) -> None:
        """The repository's dodo.py in `root` (default: this repo), as `python -m doit` needs it."""
        copy = (root or self.root) / "dodo.py"
        if not copy.exists():
            copy.write_text((REPO / "dodo.py").read_text(encoding="utf-8"), encoding="utf-8")

    def doit_cli(self, *args: str, timeout: float = 60, cwd: Path | None = None, **env: str) -> Result:
        """`python -m doit` (dodo.py copied in when missing); `env` adds to its environment."""
        self.dodo(cwd)
        proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=cwd or self.root, env=subprocess_env(**env),
                              capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def rlm_cli(self, *args: str, timeout: float = 60, cwd: Path | None = None, **env: str) -> Result:
        proc = subprocess.run([sys.executable, "-m", "rlm_tasks", *args], cwd=cwd or self.root,
                              env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def start_doit(self, *args: str, **env: str) -> Background:
        """`python -m doit` in the background, as a person runs it, in its own process group (so a test can
        signal it alone); its output is collected line by line; ended at the end of the test if still running."""
        self.dodo()
        proc = subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=self.root,
                                env=subprocess_env(PYTHONUNBUFFERED="1", **env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        started = Background(proc)
        self.started.append(started)
        return started

    def hold_lock(self, run_id: str = RUN_ID) -> LockHolder:
        """Another process takes the run's lock and holds it until the test releases it, crashes it or ends."""
        proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(self.root), run_id], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=subprocess_env())
        holder = LockHolder(proc)
        self.holders.append(holder)
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        return holder

    wait_for = staticmethod(wait_for)
    group_gone = staticmethod(group_gone)

    # cleanup
    def end_leftovers(self) -> None:
        """End what a test left running: its background processes, the worker groups the fake agent recorded
        and a detached run. Each only when the product's own check says the pid is still the recorded process,
        so a pid reused by an unrelated process is never signalled."""
        from rlm_tasks.procs import pid_alive
        from rlm_tasks.run.inflight import entry_alive

        for holder in self.holders:
            holder.end()
        for started in self.started:
            if started.proc.poll() is None:
                started.proc.kill()
            started.finish()
        for path in self.root.glob(".rlm/local/runs/*/detached.json"):
            state = read_json_or(path, {})
            if pid_alive(state.get("pid"), state.get("pid_start_ticks")) and state.get("pid_start_ticks"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state["pid"], signal.SIGKILL)
        for call in self.calls():
            if entry_alive({"pgid": call["pgid"], "pid_start_ticks": call["pid_start_ticks"]}):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(call["pgid"], signal.SIGKILL)
            if call.get("escapee") and pid_alive(call["escapee"], call["escapee_start_ticks"]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(call["escapee"], signal.SIGKILL)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Repo]:
    monkeypatch.delenv("RLM_CONFIG", raising=False)
    monkeypatch.delenv("RLM_ADOPT", raising=False)
    monkeypatch.setenv("RLM_KILL_GRACE_SECONDS", KILL_GRACE)
    made = Repo(tmp_path, monkeypatch, capsys)
    yield made
    made.end_leftovers()
