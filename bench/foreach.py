#!/usr/bin/env python3
"""What `foreach` costs a no-op run: N tasks from one glob against the same N tasks written out.

Both plans have the same ids, goals and inputs, and every task is fresh; the fan-out is globbed
(and, when the cache vouches for the globbed names, not re-validated) on every run. Goal: the
fan-out's no-op `doit` and `rlm check` within 1.3x of the written-out plan's at N = 1,000.

    python bench/foreach.py [N ...] [--rounds R]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DOIT, RACY_WAIT, RLM_CHECK, interleaved, make_rlm_repo, rlm_config, run_once

GOAL = 1.3
HEADER = f"{'N':>6}  {'written doit':>12}  {'foreach doit':>12}  {'ratio':>6}  {'written check':>13}  " \
         f"{'foreach check':>13}  {'ratio':>6}"


def make_foreach_repo(root: Path, n: int) -> Path:
    """make_rlm_repo's plan, its task list replaced by one fan-out that generates the same tasks."""
    make_rlm_repo(root, n, fresh=False)
    config = rlm_config(n)
    config["tasks"] = [{"id": "t{{ item.stem[1:] }}", "goal": "Task {{ item.stem[1:] | int }}.",
                        "inputs": ["{{ item }}"], "foreach": {"files": "src/*.txt"}}]
    (root / "rlm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    from bench.common import record_fresh

    record_fresh(root)
    return root


def measure(n: int, rounds: int, base: Path) -> dict[str, float]:
    written, fanned = make_rlm_repo(base / f"written-{n}", n), make_foreach_repo(base / f"foreach-{n}", n)
    time.sleep(RACY_WAIT)  # files younger than the cache's racy window are re-hashed on every run
    for _ in range(2):  # warm up: bytecode, page cache, .rlm/cache/
        for repo in (written, fanned):
            run_once(DOIT, repo), run_once(RLM_CHECK, repo)
    return interleaved({"written": (DOIT, written), "foreach": (DOIT, fanned),
                        "written_check": (RLM_CHECK, written), "foreach_check": (RLM_CHECK, fanned)}, rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(HEADER)
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        for n in args.sizes:
            t = measure(n, args.rounds, Path(tmp))
            doit_ratio, check_ratio = t["foreach"] / t["written"], t["foreach_check"] / t["written_check"]
            worst = max(worst, doit_ratio, check_ratio)
            print(f"{n:>6}  {t['written']:>11.3f}s  {t['foreach']:>11.3f}s  {doit_ratio:>5.2f}x  "
                  f"{t['written_check']:>12.3f}s  {t['foreach_check']:>12.3f}s  {check_ratio:>5.2f}x", flush=True)
    print(f"goal <= {GOAL}x: {'met' if worst <= GOAL else 'MISSED'} (worst {worst:.2f}x)")
    return 0 if worst <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
