#!/usr/bin/env python3
"""Makespan: wall time of DAGs with uneven task durations against the lower bound max(critical path, work / slots).

Each scenario is a plan whose agent sleeps a per-task time (bench/sleep_worker.py
with a JSON file of durations), declared in an order that is bad for doit's own
dispatch: long tasks last, a chain of dependencies after many short tasks. A
first run learns the durations (its order comes from the graph alone); then the
run's goal is edited, so every task is stale, and the plan runs again, taking
turns: rlm's order (longest remaining chain first, from the durations of the
earlier attempts) and doit's declaration order (RLM_DISPATCH_ORDER=declared),
measured in the same session. The makespan is the time from the first worker's
start to the last worker's end (the workers write their start and end times):
doit's own start-up, the same whatever the order, is in `bench/noop.py`'s
figures, and the wall time is shown beside it. Goals: rlm's makespan within
1.1x of the lower bound, and never longer than declaration order's (the uniform scenario has nothing to
gain: both orders are the same there, so it checks only the second goal).

    python bench/makespan.py [--unit SECONDS] [--rounds R] [--scenario NAME ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DOIT, ROOT, SLEEP_WORKER, run_once

GOAL_BOUND, SLOTS = 1.1, 4
NOISE = 1.05  # "no longer than declared order" allows this much: equal tasks start in the same order either way


def scenarios(unit: float) -> dict[str, list[dict[str, Any]]]:
    """Tasks (id, seconds, depends_on), in declaration order."""
    def task(task_id: str, units: float, *deps: str) -> dict[str, Any]:
        return {"id": task_id, "seconds": units * unit, "depends_on": list(deps)}

    return {
        # 6 short tasks, then 2 long ones: declared order starts the long ones a wave late
        "long-last": [*(task(f"s{i}", 2) for i in range(6)), task("long1", 6), task("long2", 6)],
        # 12 short tasks, then a chain of three: declared order runs the chain after every short task
        "chain-last": [*(task(f"s{i:02d}", 1) for i in range(12)), task("c1", 2), task("c2", 2, "c1"),
                       task("c3", 2, "c2")],
        # equal tasks: nothing to gain, nothing may be lost
        "uniform": [task(f"u{i:02d}", 1) for i in range(8)],
    }


def lower_bound(tasks: list[dict[str, Any]], slots: int) -> float:
    finish: dict[str, float] = {}
    for t in tasks:  # declared after their dependencies here
        finish[t["id"]] = t["seconds"] + max((finish[d] for d in t["depends_on"]), default=0.0)
    return max(max(finish.values()), sum(t["seconds"] for t in tasks) / slots)


def make_repo(root: Path, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    root.mkdir(parents=True)
    durations = root / "durations.json"
    durations.write_text(json.dumps({t["id"]: t["seconds"] for t in tasks}))
    config = {
        "version": 1, "run_id": "bench", "goal": "Benchmark the dispatch order.",
        "budget": {"max_inflight": SLOTS},
        "agent": {"kind": "command", "command": ["{{ python }}", "-S", str(SLEEP_WORKER), str(durations)],
                  "timeout": 600},
        "tasks": [{"id": t["id"], "goal": f"Task {t['id']}.", **({"depends_on": t["depends_on"]}
                                                                  if t["depends_on"] else {})} for t in tasks],
    }
    (root / "rlm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "dodo.py").write_text((ROOT / "dodo.py").read_text())
    return config


def rerun(root: Path, config: dict[str, Any], n: int, **env: str) -> tuple[float, float]:
    """(wall time of `doit`, makespan of its workers)."""
    config["goal"] = f"Benchmark the dispatch order (round {n})."  # the contract changes: every task is stale
    (root / "rlm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return timed_run(root, **env)


def timed_run(root: Path, **env: str) -> tuple[float, float]:
    times = root / "times.txt"
    times.unlink(missing_ok=True)
    wall = run_once(DOIT, root, **env)
    spans = [line.split() for line in times.read_text().splitlines()]
    return wall, max(float(end) for _, _, end in spans) - min(float(start) for _, start, _ in spans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", type=float, default=2.0, help="seconds of one duration unit (default 2)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--scenario", action="append", help="run only these scenarios")
    args = parser.parse_args()
    chosen = {name: tasks for name, tasks in scenarios(args.unit).items()
              if not args.scenario or name in args.scenario}
    print(f"{SLOTS} slots, unit {args.unit:g}s; makespan of the workers (median of {args.rounds}), its ratio to "
          "the bound, and the wall time of `doit`")
    print(f"{'scenario':<11} {'bound':>6} {'first run':>9} {'rlm order':>9} {'ratio':>6} {'declared':>9} "
          f"{'ratio':>6} {'rlm/declared':>12} {'wall rlm':>9} {'wall declared':>13}")
    met = True
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        for name, tasks in chosen.items():
            root = Path(tmp) / name
            config = make_repo(root, tasks)
            bound = lower_bound(tasks, SLOTS)
            first = timed_run(root)[1]
            ranked, declared = [], []
            for i in range(args.rounds):  # taking turns, so a busy machine slows both alike
                ranked.append(rerun(root, config, 2 * i))
                declared.append(rerun(root, config, 2 * i + 1, RLM_DISPATCH_ORDER="declared"))
            r, d = statistics.median(m for _, m in ranked), statistics.median(m for _, m in declared)
            wall_r, wall_d = statistics.median(w for w, _ in ranked), statistics.median(w for w, _ in declared)
            uneven = len({t["seconds"] for t in tasks}) > 1 or any(t["depends_on"] for t in tasks)
            met = met and (r <= GOAL_BOUND * bound or not uneven) and r <= d * NOISE
            print(f"{name:<11} {bound:>5.1f}s {first:>8.2f}s {r:>8.2f}s {r / bound:>5.2f}x {d:>8.2f}s "
                  f"{d / bound:>5.2f}x {r / d:>11.2f}x {wall_r:>8.2f}s {wall_d:>12.2f}s", flush=True)
    print(f"goals: rlm order's makespan <= {GOAL_BOUND}x the bound (uneven DAGs), no longer than declared order's "
          f"(+{NOISE - 1:.0%} noise): "
          f"{'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
