#!/usr/bin/env python3
"""No-op overhead: `doit` and `rlm check` on a plan whose N tasks are all fresh, against a bare doit.

The baseline, measured in the same run: a hand-written dodo.py with N doit
tasks, each with one file_dep and one target, sqlite3 backend, everything up
to date. Goals: rlm `doit` / bare <= 1.2 and `rlm check` / bare <= 0.8
at N = 1,000 and 10,000, on the median wall time of interleaved rounds. The
median CPU time (user + system) of each command is shown too: on a shared
machine it moves much less than the wall time.

    python bench/noop.py [N ...] [--rounds R]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DOIT, RACY_WAIT, RLM_CHECK, interleaved_cpu, make_bare_repo, make_rlm_repo, run_once

DOIT_GOAL, CHECK_GOAL = 1.2, 0.8
HEADER = (f"{'N':>6}  {'bare doit':>9}  {'rlm doit':>9}  {'ratio':>6}  {'rlm check':>9}  {'ratio':>6}  {'cold doit':>9}"
          f"  | cpu ratios: doit  check")


def measure(n: int, rounds: int, base: Path) -> dict[str, float]:
    rlm, bare = make_rlm_repo(base / f"rlm-{n}", n), make_bare_repo(base / f"bare-{n}", n)
    time.sleep(RACY_WAIT)  # files younger than the cache's racy window are re-hashed on every run
    cold = run_once(DOIT, rlm)  # first run: validates rlm.yaml, renders every prompt, fills .rlm/local/cache/
    for _ in range(2):  # warm up: bytecode, page cache, the cache's racy window
        run_once(DOIT, rlm), run_once(RLM_CHECK, rlm), run_once(DOIT, bare)
    commands = {"bare": (DOIT, bare), "doit": (DOIT, rlm), "check": (RLM_CHECK, rlm)}
    times, cpu = interleaved_cpu(commands, rounds)
    return {"cold": cold, **times, **{f"cpu_{name}": value for name, value in cpu.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(HEADER)
    worst_doit = worst_check = 0.0
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        for n in args.sizes:
            t = measure(n, args.rounds, Path(tmp))
            doit_ratio, check_ratio = t["doit"] / t["bare"], t["check"] / t["bare"]
            worst_doit, worst_check = max(worst_doit, doit_ratio), max(worst_check, check_ratio)
            print(f"{n:>6}  {t['bare']:>8.3f}s  {t['doit']:>8.3f}s  {doit_ratio:>5.2f}x  {t['check']:>8.3f}s  "
                  f"{check_ratio:>5.2f}x  {t['cold']:>8.3f}s  |  {t['cpu_doit'] / t['cpu_bare']:>9.2f}x  "
                  f"{t['cpu_check'] / t['cpu_bare']:>5.2f}x", flush=True)
    met = worst_doit <= DOIT_GOAL and worst_check <= CHECK_GOAL
    print(f"goals doit <= {DOIT_GOAL}x, check <= {CHECK_GOAL}x: {'met' if met else 'MISSED'} "
          f"(worst doit {worst_doit:.2f}x, check {worst_check:.2f}x)")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
