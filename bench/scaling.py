#!/usr/bin/env python3
"""Scaling: no-op time of `doit` and `rlm check` at N = 100, 1,000, 5,000, 10,000 fresh tasks.

Each size is measured against the bare dodo.py baseline (one file_dep and one
target per task) of the same size, in the same run; the time per task beyond
a fixed start-up shows whether the cost grows linearly.

    python bench/scaling.py [N ...] [--rounds R]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.noop import HEADER, measure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 1000, 5000, 10000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        for n in args.sizes:
            t = measure(n, args.rounds, Path(tmp))
            rows.append((n, t))
            print(f"{n:>6}  {t['bare']:>8.3f}s  {t['doit']:>8.3f}s  {t['doit'] / t['bare']:>5.2f}x  "
                  f"{t['check']:>8.3f}s  {t['check'] / t['bare']:>5.2f}x  {t['cold']:>8.3f}s  |  "
                  f"{t['cpu_doit'] / t['cpu_bare']:>9.2f}x  {t['cpu_check'] / t['cpu_bare']:>5.2f}x", flush=True)
    if len(rows) > 1:
        (n0, t0), (n1, t1) = rows[0], rows[-1]
        print("marginal cost per task between the smallest and the largest plan:")
        for key, name in (("bare", "bare doit"), ("doit", "rlm doit"), ("check", "rlm check"), ("cold", "cold doit")):
            print(f"  {name:<10} {(t1[key] - t0[key]) / (n1 - n0) * 1e6:7.1f} us/task")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
