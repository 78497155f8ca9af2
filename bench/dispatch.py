#!/usr/bin/env python3
"""Dispatch efficiency: 40 tasks whose agent sleeps 1 s, max_inflight 8 (ideal wall time 5 s).

Two figures. Efficiency = ideal / actual wall time of `doit` (start-up,
validation and rendering included). Slots busy = the time workers ran /
(slots x the time from the first worker's start to the last one's end): how
well dispatch keeps the slots busy once the run goes (goal >= 0.95; each
worker records its start and end). The baseline measured in the same run is a
bare dodo.py running the same 40 sleeps as doit subprocess actions with the
same parallelism (`-n 8 -P thread`), so the figure also shows what rlm adds on
top of doit itself. With --dask the same
plan also runs through the Dask executor on a LocalCluster of two worker
processes (`agents=4` each), against the local executor.

    python bench/dispatch.py [--tasks 40] [--inflight 8] [--sleep 1.0] [--dask]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DOIT, SLEEP_WORKER, make_rlm_repo, run_once


def busy_of(repo: Path, slots: int) -> float:
    """Worker time / (slots x first start to last end), from the times each worker appended (sleep_worker.py)."""
    times = repo.parent / f"{repo.name}.times.txt"
    spans = [(float(start), float(end)) for _, start, end in
             (line.split() for line in times.read_text().splitlines())]
    makespan = max(end for _, end in spans) - min(start for start, _ in spans)
    return sum(end - start for start, end in spans) / (slots * makespan)


def timed_repo(root: Path, tasks: int, inflight: int, sleep: float) -> Path:
    """The benchmark plan, its agent sleeping `sleep` per task and recording its start and end."""
    durations = root.parent / f"{root.name}.durations.json"
    durations.write_text(json.dumps({f"t{i:05d}": sleep for i in range(tasks)}))
    agent = {"kind": "command", "command": ["{{ python }}", "-S", str(SLEEP_WORKER), str(durations)], "timeout": 600}
    repo = make_rlm_repo(root, tasks, fresh=False, max_inflight=inflight, agent=agent)
    (root.parent / f"{root.name}.times.txt").unlink(missing_ok=True)
    return repo

GOAL = 0.85
GOAL_BUSY = 0.95
BARE_SLEEPS = '''\
import sys
N = {n}
DOIT_CONFIG = {{"backend": "sqlite3", "dep_file": ".bare.sqlite3", "verbosity": 0}}


def task_sleep():
    for i in range(N):
        yield {{"name": f"t{{i:05d}}", "actions": [[sys.executable, "-S", {worker!r}, {durations!r}, f"t{{i:05d}}"]],
               "uptodate": [False]}}
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dask", action="store_true", help="also through the Dask executor (needs the dask extra)")
    args = parser.parse_args()
    cluster = None
    if args.dask:
        import distributed

        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=4, processes=True, host="127.0.0.1",
                                           dashboard_address="127.0.0.1:0", resources={"agents": 4})
    ideal = args.tasks * args.sleep / args.inflight
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        bare = Path(tmp) / "bare"
        bare.mkdir()
        durations = Path(tmp) / "bare.durations.json"
        durations.write_text(json.dumps({f"t{i:05d}": args.sleep for i in range(args.tasks)}))
        (bare / "dodo.py").write_text(BARE_SLEEPS.format(n=args.tasks, durations=str(durations),
                                                         worker=str(SLEEP_WORKER)))
        rlm_times, bare_times, dask_times, busy_rlm, busy_bare = [], [], [], [], []
        for i in range(args.rounds):
            repo = timed_repo(Path(tmp) / f"rlm-{i}", args.tasks, args.inflight, args.sleep)
            rlm_times.append(run_once(DOIT, repo))
            busy_rlm.append(busy_of(repo, args.inflight))
            shutil.rmtree(repo)
            (Path(tmp) / "bare.times.txt").unlink(missing_ok=True)
            bare_times.append(run_once([*DOIT, "-n", str(args.inflight), "-P", "thread"], bare))
            busy_bare.append(busy_of(bare, args.inflight))
            if cluster is not None:
                repo = make_rlm_repo(Path(tmp) / f"dask-{i}", args.tasks, fresh=False, max_inflight=args.inflight,
                                     sleep=args.sleep)
                dask_times.append(run_once(DOIT, repo, RLM_EXECUTOR=cluster.scheduler_address))
                shutil.rmtree(repo)
    if cluster is not None:
        cluster.close()
    rlm_best, bare_best = min(rlm_times), min(bare_times)
    efficiency, slots_busy = ideal / rlm_best, max(busy_rlm)
    print(f"{args.tasks} tasks x {args.sleep:g}s sleep, {args.inflight} at once: ideal {ideal:.2f}s")
    print(f"  bare doit -n {args.inflight} -P thread: {bare_best:.2f}s  efficiency {ideal / bare_best:.3f}  "
          f"slots busy {max(busy_bare):.3f} while it ran")
    print(f"  rlm doit (max_inflight {args.inflight}):   {rlm_best:.2f}s  efficiency {efficiency:.3f}  "
          f"({rlm_best / bare_best:.2f}x bare); slots busy {slots_busy:.3f} while it ran")
    if dask_times:
        dask_best = min(dask_times)
        print(f"  rlm doit through Dask (LocalCluster, 2 worker processes, agents=4 each): {dask_best:.2f}s  "
              f"efficiency {ideal / dask_best:.3f}  ({dask_best / rlm_best:.2f}x the local executor)")
    met = efficiency >= GOAL and slots_busy >= GOAL_BUSY
    print(f"goals efficiency >= {GOAL}, slots busy >= {GOAL_BUSY}: {'met' if met else 'MISSED'} "
          f"(best of {args.rounds} rounds)")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
