#!/usr/bin/env python3
"""No-op overhead: `doit` and `rlm check` on a plan whose N tasks are all fresh, against a bare doit.

The baseline, measured in the same run: a hand-written dodo.py with N doit
tasks, each with one file_dep and one target, sqlite3 backend, everything up
to date. Goal: rlm/bare <= 1.5 at N = 1,000 and 5,000, for `doit` and for `rlm check`.

    python bench/noop.py [N ...] [--rounds R]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DOIT, RACY_WAIT, RLM_CHECK, interleaved, make_bare_repo, make_rlm_repo, run_once

GOAL = 1.5
HEADER = f"{'N':>6}  {'bare doit':>9}  {'rlm doit':>9}  {'ratio':>6}  {'rlm check':>9}  {'ratio':>6}  {'cold doit':>9}"


def measure(n: int, rounds: int, base: Path) -> dict[str, float]:
    rlm, bare = make_rlm_repo(base / f"rlm-{n}", n), make_bare_repo(base / f"bare-{n}", n)
    time.sleep(RACY_WAIT)  # files younger than the cache's racy window are re-hashed on every run
    cold = run_once(DOIT, rlm)  # first run: validates rlm.yaml, renders every prompt, fills .rlm/local/cache/
    for _ in range(2):  # warm up: bytecode, page cache, the cache's racy window
        run_once(DOIT, rlm), run_once(RLM_CHECK, rlm), run_once(DOIT, bare)
    times = interleaved({"bare": (DOIT, bare), "doit": (DOIT, rlm), "check": (RLM_CHECK, rlm)}, rounds)
    return {"cold": cold, **times}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(HEADER)
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        for n in args.sizes:
            t = measure(n, args.rounds, Path(tmp))
            doit_ratio, check_ratio = t["doit"] / t["bare"], t["check"] / t["bare"]
            worst = max(worst, doit_ratio, check_ratio)
            print(f"{n:>6}  {t['bare']:>8.3f}s  {t['doit']:>8.3f}s  {doit_ratio:>5.2f}x  {t['check']:>8.3f}s  "
                  f"{check_ratio:>5.2f}x  {t['cold']:>8.3f}s", flush=True)
    print(f"goal <= {GOAL}x: {'met' if worst <= GOAL else 'MISSED'} (worst {worst:.2f}x)")
    return 0 if worst <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
