#!/usr/bin/env python3
"""Peak memory (max RSS) of the orchestrating `doit` process for a 10,000-task plan; goal <= 150 MB.

Measured for: the first run after rlm.yaml changed (validation, every prompt
rendered, every file hashed: the cold path), a no-op run (everything fresh),
and a run in which --stale of the tasks run their (trivial) worker. The
baseline, measured in the same run: a bare dodo.py with as many doit tasks,
each with one file_dep and one target, everything up to date.

    python bench/memory.py [--tasks 10000] [--stale 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DOIT, RACY_WAIT, env, make_bare_repo, make_rlm_repo

GOAL_MB = 150.0
MEASURE = ("import resource, subprocess, sys\n"
           "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
           "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def peak_mb(argv: list[str], cwd: Path) -> float:
    """Max RSS of one command (Linux reports KiB), from a fresh wrapper so no earlier child counts."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *argv], cwd=cwd, env=env(), text=True,
                         stdout=subprocess.PIPE, check=True).stdout.split()
    if out[0] not in ("0", "1"):
        raise SystemExit(f"{' '.join(argv)} in {cwd} exited {out[0]}")
    return int(out[1]) / 1024


def make_stale(repo: Path, count: int) -> None:
    """Drop the provenance of `count` tasks, so that many workers run."""
    path = repo / ".rlm/runs/bench/provenance.json"
    data = json.loads(path.read_text())
    for worker_id in sorted(data["tasks"])[:count]:
        del data["tasks"][worker_id]
    path.write_text(json.dumps(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--stale", type=int, default=200)
    args = parser.parse_args()
    import time

    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        rlm = make_rlm_repo(Path(tmp) / "rlm", args.tasks, max_inflight=8)
        bare = make_bare_repo(Path(tmp) / "bare", args.tasks)
        time.sleep(RACY_WAIT)
        shutil.rmtree(rlm / ".rlm/local/cache", ignore_errors=True)
        cold = peak_mb(DOIT, rlm)
        peak_mb(DOIT, rlm)
        noop = peak_mb(DOIT, rlm)
        make_stale(rlm, args.stale)
        running = peak_mb(DOIT, rlm)
        baseline = peak_mb(DOIT, bare)
    rows = [("bare doit, no-op", baseline), ("rlm doit, cold (first run)", cold), ("rlm doit, no-op", noop),
            (f"rlm doit, {args.stale} workers run", running)]
    print(f"peak RSS of the orchestrating process, {args.tasks} tasks")
    for name, mb in rows:
        print(f"  {name:<30} {mb:7.1f} MB  {mb / baseline:5.2f}x bare")
    worst = max(cold, noop, running)
    print(f"goal <= {GOAL_MB:g} MB: {'met' if worst <= GOAL_MB else 'MISSED'} (worst {worst:.1f} MB)")
    return 0 if worst <= GOAL_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
