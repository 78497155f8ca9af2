#!/usr/bin/env python3
"""Benchmark agent: reads the prompt, sleeps, writes a valid report (under rlm).

argv[1] is the seconds to sleep, or a JSON file {"<worker_id>": seconds} (bench/makespan.py: uneven tasks;
the worker id is $RLM_WORKER_ID, else argv[2]);
then the worker appends "<worker_id> <start> <end>" (Unix times) to <that file's name without
".durations.json" or ".json">.times.txt beside it ("durations.json" -> "times.txt").
"""

import json
import os
import sys
import time
from pathlib import Path

START = time.time()

if "RLM_REPORT_PATH" in os.environ:
    sys.stdin.read()
arg = sys.argv[1] if len(sys.argv) > 1 else "0"
worker_id = os.environ.get("RLM_WORKER_ID") or (sys.argv[2] if len(sys.argv) > 2 else "")  # bare doit: argv[2]
durations = json.loads(Path(arg).read_text(encoding="utf-8")) if arg.endswith(".json") else {worker_id: arg}
seconds = float(durations[worker_id])
time.sleep(seconds)
if "RLM_REPORT_PATH" in os.environ:  # the bare baseline runs the same sleep without rlm
    report = Path(os.environ["RLM_REPORT_PATH"])
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(f"# {os.environ['RLM_WORKER_ID']}\n\n## Contract Compliance\n- kept\n", encoding="utf-8")
if arg.endswith(".json"):
    stem = Path(arg).name.removesuffix(".json").removesuffix(".durations").removesuffix("durations")
    with open(Path(arg).with_name(f"{stem}.times.txt" if stem else "times.txt"), "a", encoding="utf-8") as times:
        times.write(f"{worker_id} {START:.3f} {time.time():.3f}\n")
