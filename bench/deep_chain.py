#!/usr/bin/env python3
"""Validation of a `depends_on` chain N deep against N independent tasks: time and peak memory of `rlm validate`.

The chain is the worst case of the dependency walks (cycle check, ownership reach); validation must grow
linearly with the plan, so the ratio chain/flat stays near 1 at every size.

    python bench/deep_chain.py [N ...]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import env


def write(root: Path, n: int, chain: bool) -> Path:
    lines = ["version: 1", "run_id: chain", "goal: g", "agent: {kind: command, command: ['true']}", "tasks:"]
    for i in range(n):
        # no `owns`: the overlap check between owning tasks is pairwise by design (each pair that may run at
        # once), a cost of its own and not the dependency walks measured here
        extra = f", depends_on: [t{i - 1}]" if chain and i else ""
        lines.append(f"  - {{id: t{i}, goal: g{extra}}}")
    path = root / ("chain.yaml" if chain else "flat.yaml")
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(path: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one `rlm validate`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rlm_tasks", "validate", path.name], cwd=path.parent, env=env(),
                   check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), after.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 5000, 20000])
    args = parser.parse_args()
    print(f"{'N':>6}  {'flat cpu':>9}  {'chain cpu':>9}  {'ratio':>6}  {'chain peak MB':>13}")
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        for n in args.sizes:
            root = Path(tmp) / str(n)
            root.mkdir()
            _, flat_cpu, _ = measure(write(root, n, chain=False))
            _, chain_cpu, peak = measure(write(root, n, chain=True))  # ru_maxrss: the largest child so far
            print(f"{n:>6}  {flat_cpu:>8.2f}s  {chain_cpu:>8.2f}s  {chain_cpu / flat_cpu:>5.2f}x  {peak:>13.0f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
