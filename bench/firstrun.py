#!/usr/bin/env python3
"""First run of N instant-worker tasks at max_inflight 8, against bare doit and make on the same subprocesses.

Every task's agent is `sh -c 'echo ...'` printing a valid report (`report:
stdout`): the per-task floor, where a Python worker's start-up would hide
rlm's overhead (`--worker python`: `python -S bench/sleep_worker.py 0`, which
reads the prompt and writes the report). The CPU time (user + system) of each
command and its workers is shown too: on a machine shared with other jobs it
moves much less than the wall time. Baselines, measured in the same run:
a bare dodo.py running the same N subprocesses as actions with `-n 8 -P
thread`, and `make -j8` running them as N targets. Goals: rlm/bare <= 2 at
every N, and the time per task at the largest N within 1.1x of the time per
task at the smallest.

    python bench/firstrun.py [N ...] [--rounds R] [--worker sh|python] [--profile OUT.prof]

--profile runs rlm once more at the largest N under cProfile (not timed),
writes the profile to OUT.prof and the top of its summary (by cumulative and
by own time) to OUT.prof.txt.
"""

from __future__ import annotations

import argparse
import pstats
import resource
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DOIT, ECHO_AGENT, ECHO_REPORT, SLEEP_WORKER, make_rlm_repo, run_once

GOAL_RATIO = 2.0
GOAL_GROWTH = 1.1
BARE_WORKERS = '''\
N = {n}
DOIT_CONFIG = {{"backend": "sqlite3", "dep_file": ".bare.sqlite3", "verbosity": 0}}


def task_w():
    for i in range(N):
        yield {{"name": f"t{{i:05d}}", "actions": [{argv!r}], "uptodate": [False]}}
'''
WORKERS = {"sh": ["sh", "-c", ECHO_REPORT], "python": [sys.executable, "-S", str(SLEEP_WORKER), "0"]}


def makefile(n: int, argv: list[str]) -> str:
    names = " ".join(f"t{i:05d}" for i in range(n))
    command = " ".join(shlex.quote(arg) for arg in argv)
    return (f".PHONY: all {names}\nall: {names}\n"
            f"{names}:\n\t@{command} >/dev/null\n")


def cpu() -> float:
    """User + system time of the waited-for children so far (doit and the workers it started)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(n: int, rounds: int, base: Path, profile: str | None, worker: str) -> dict[str, float]:
    bare = base / f"bare-{n}"
    bare.mkdir()
    (bare / "dodo.py").write_text(BARE_WORKERS.format(n=n, argv=WORKERS[worker]))
    (bare / "Makefile").write_text(makefile(n, WORKERS[worker]))
    agent = ECHO_AGENT if worker == "sh" else None
    times: dict[str, list[float]] = {"rlm": [], "bare": [], "make": [], "cpu_rlm": [], "cpu_bare": []}
    if profile is not None:  # a run of its own: the profiler's overhead must not count in the ratios
        repo = make_rlm_repo(base / f"rlm-{n}-profiled", n, fresh=False, max_inflight=8, agent=agent)
        run_once([sys.executable, "-m", "cProfile", "-o", profile, "-m", "doit"], repo)
        shutil.rmtree(repo)
    for i in range(rounds):  # interleaved, so a busy machine slows them alike
        repo = make_rlm_repo(base / f"rlm-{n}-{i}", n, fresh=False, max_inflight=8, agent=agent)
        before = cpu()
        times["rlm"].append(run_once(DOIT, repo))
        times["cpu_rlm"].append(cpu() - before)
        shutil.rmtree(repo)
        before = cpu()
        times["bare"].append(run_once([*DOIT, "-n", "8", "-P", "thread"], bare))
        times["cpu_bare"].append(cpu() - before)
        times["make"].append(run_once(["make", "-s", "-j8"], bare))
    shutil.rmtree(bare)
    return {name: statistics.median(values) for name, values in times.items()}


def summarise(profile: str, lines: int = 15) -> Path:
    """The top `lines` functions by cumulative and by own time, as pstats prints them, beside the profile."""
    out = Path(f"{profile}.txt")
    with out.open("w", encoding="utf-8") as stream:
        for order in ("cumulative", "tottime"):
            stats = pstats.Stats(profile, stream=stream)
            stats.strip_dirs().sort_stats(order).print_stats(lines)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 5000, 10000])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--worker", choices=sorted(WORKERS), default="sh",
                        help="sh: `sh -c 'echo ...'` (the floor; default), python: bench/sleep_worker.py 0")
    parser.add_argument("--profile", help="profile one more (untimed) rlm run at the largest N: the profile "
                        "here, the top of its summary in PROFILE.txt")
    args = parser.parse_args()
    print(f"{'N':>6}  {'make -j8':>9}  {'bare doit':>9}  {'rlm doit':>9}  {'rlm/bare':>8}  {'rlm ms/task':>11}  "
          f"{'cpu bare':>8}  {'cpu rlm':>8}  {'cpu ratio':>9}")
    per_task: list[float] = []
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        for n in args.sizes:
            profile = args.profile if n == max(args.sizes) else None
            t = measure(n, args.rounds, Path(tmp), profile, args.worker)
            ratio = t["rlm"] / t["bare"]
            worst = max(worst, ratio)
            per_task.append(t["rlm"] / n)
            print(f"{n:>6}  {t['make']:>8.2f}s  {t['bare']:>8.2f}s  {t['rlm']:>8.2f}s  {ratio:>7.2f}x  "
                  f"{t['rlm'] / n * 1e3:>11.3f}  {t['cpu_bare']:>7.2f}s  {t['cpu_rlm']:>7.2f}s  "
                  f"{t['cpu_rlm'] / t['cpu_bare']:>8.2f}x", flush=True)
    growth = per_task[-1] / per_task[0]
    met = worst <= GOAL_RATIO and growth <= GOAL_GROWTH
    if args.profile:
        print(f"profile: {args.profile}, summary: {summarise(args.profile)}")
    print(f"time per task, largest N vs smallest: {growth:.2f}x (goal <= {GOAL_GROWTH})")
    print(f"goal rlm/bare <= {GOAL_RATIO}x: worst {worst:.2f}x; {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
