"""Shared by the benchmarks: plans of N tasks made fresh without running a worker, timing helpers."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
REPORT = ("# {id}\n\n## What I did\nRead.\n\n## Key findings\n- ok\n\n## Deferred opportunities\nNone identified.\n\n"
          "## Contract Compliance\n- kept\n")
SLEEP_WORKER = Path(__file__).resolve().parent / "sleep_worker.py"
RACY_WAIT = 2.2  # rlm_tasks.state.cache.RACY_SECONDS, plus a little


def env() -> dict[str, str]:
    """The environment of a benchmark subprocess: this checkout first on sys.path, bytecode caching on.

    PYTHONDONTWRITEBYTECODE (set in some sandboxes) would make every run compile rlm_tasks
    from source, which no installed copy does; the bare baseline has almost no code to compile.
    """
    out = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return out


ECHO_REPORT = "echo '# report'; echo; echo '## Contract Compliance'; echo '- kept'"
ECHO_AGENT = {"kind": "command", "command": ["sh", "-c", ECHO_REPORT], "report": "stdout", "timeout": 600}


def rlm_config(n: int, *, max_inflight: int = 4, sleep: float = 0.0, agent: dict | None = None) -> dict:
    """N independent map tasks, each with one input file, run by a command agent (the sleep worker by default)."""
    sleeper = {"kind": "command", "command": ["{{ python }}", "-S", str(SLEEP_WORKER), str(sleep)], "timeout": 600}
    return {
        "version": 1,
        "run_id": "bench",
        "goal": "Benchmark the runner.",
        "budget": {"max_inflight": max_inflight},
        "agent": agent or sleeper,
        "tasks": [{"id": f"t{i:05d}", "goal": f"Task {i}.", "inputs": [f"src/f{i:05d}.txt"]} for i in range(n)],
    }


def write_inputs(root: Path, n: int) -> None:
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (src / f"f{i:05d}.txt").write_text(f"input {i}\n")


def make_rlm_repo(root: Path, n: int, *, fresh: bool = True, max_inflight: int = 4, sleep: float = 0.0,
                  agent: dict | None = None) -> Path:
    """A repo with rlm.yaml + dodo.py; with `fresh`, every report and provenance entry written as a worker would."""
    root.mkdir(parents=True, exist_ok=True)
    write_inputs(root, n)
    config = rlm_config(n, max_inflight=max_inflight, sleep=sleep, agent=agent)
    (root / "rlm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "dodo.py").write_text((ROOT / "dodo.py").read_text())
    if fresh:
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r});"
                        "from bench.common import record_fresh; record_fresh('.')"], cwd=root, check=True, env=env())
    return root


def record_fresh(root: str | Path) -> None:
    """Write every report and its provenance entry (as if each worker had just succeeded)."""
    from rlm_tasks.config.plan import load_plan
    from rlm_tasks.run import attempts
    from rlm_tasks.state import planfile
    from rlm_tasks.state.context import RunContext

    ctx = RunContext(load_plan(Path(root) / "rlm.yaml"))
    planfile.write_plan(ctx)
    entries = {}
    now = attempts.iso(time.time())
    for task in ctx.plan.tasks:
        report = ctx.report_file(task)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(REPORT.format(id=task.id))
        from rlm_tasks.state.provenance import sha256_file

        tier = ctx.plan.tier(task.compute_tier)
        entries[task.id] = {
            "worker_id": task.worker_id, "mode": task.mode, "report_path": task.report_path,
            "report_sha256": sha256_file(report), "digests": ctx.digests(task).as_json(),
            "compute_tier": tier.name, "model": tier.model, "effort": tier.effort, "attempt": 1,
            "log_path": ctx.layout.log_rel(task.worker_id, 1), "started_at": now, "finished_at": now, "exit_code": 0,
        }
    from rlm_tasks.state.provenance import pack

    packed = {worker_id: pack(entry) for worker_id, entry in entries.items()}
    ctx.store._entries = packed
    ctx.store._write(packed)


BARE_DODO = '''\
"""The baseline: N hand-written doit tasks, each with one file_dep and one target."""
import shutil

N = {n}
DOIT_CONFIG = {{"backend": "sqlite3", "dep_file": ".bare.sqlite3", "verbosity": 0}}


def copy(dependencies, targets):
    shutil.copyfile(dependencies[0], targets[0])


def task_bare():
    for i in range(N):
        yield {{"name": f"t{{i:05d}}", "file_dep": [f"src/f{{i:05d}}.txt"], "targets": [f"out/f{{i:05d}}.txt"],
               "actions": [copy]}}
'''


def make_bare_repo(root: Path, n: int) -> Path:
    """The hand-written dodo.py, run once so every target exists and its db knows the file_deps."""
    root.mkdir(parents=True, exist_ok=True)
    write_inputs(root, n)
    (root / "out").mkdir(exist_ok=True)
    (root / "dodo.py").write_text(BARE_DODO.format(n=n))
    subprocess.run([sys.executable, "-m", "doit"], cwd=root, check=True, env=env(), stdout=subprocess.DEVNULL)
    return root


def run_once(argv: Sequence[str], cwd: Path, expect: int | None = 0, **extra_env: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(list(argv), cwd=cwd, env={**env(), **extra_env}, stdin=subprocess.DEVNULL,
                          capture_output=True)
    elapsed = time.perf_counter() - start
    if expect is not None and proc.returncode != expect:
        output = proc.stdout.decode() + proc.stderr.decode()
        raise SystemExit(f"{' '.join(argv)} in {cwd} exited {proc.returncode}:\n{output}")
    return elapsed


def timed(argv: Sequence[str], cwd: Path, repeat: int = 3, expect: int | None = 0) -> float:
    """Median wall time of a command over `repeat` runs."""
    return statistics.median(run_once(argv, cwd, expect) for _ in range(repeat))


def interleaved(commands: dict[str, tuple[Sequence[str], Path]], rounds: int) -> dict[str, float]:
    """Median wall time per command, the commands taking turns so a busy machine slows them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (argv, cwd) in commands.items():
            times[name].append(run_once(argv, cwd))
    return {name: statistics.median(values) for name, values in times.items()}


def interleaved_cpu(commands: dict[str, tuple[Sequence[str], Path]],
                    rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """As `interleaved`, and the median CPU time (user + system) of each command too."""
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (argv, cwd) in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall[name].append(run_once(argv, cwd))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return ({name: statistics.median(v) for name, v in wall.items()},
            {name: statistics.median(v) for name, v in cpu.items()})


DOIT = [sys.executable, "-m", "doit"]
RLM_CHECK = [sys.executable, "-m", "rlm_tasks", "check"]
