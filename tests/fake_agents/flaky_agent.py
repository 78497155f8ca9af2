#!/usr/bin/env python3
"""A `kind: command` agent for the robustness tests, driven by a JSON spec in $FLAKY_SPEC.

Spec: {"<worker_id>": {"fail": [attempts], "invalid": [attempts], "hang": [attempts],
"sleep": seconds, "child": true, "progress": seconds}}; "*" applies to every worker.
Every start is recorded as $FLAKY_RECORD/<worker_id>.<attempt>.json (argv, pid,
process group, tier), so tests can see what ran and check no process survives.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

prompt = sys.stdin.read()
worker = os.environ["RLM_WORKER_ID"]
attempt = int(os.environ["RLM_ATTEMPT"])
spec_all = json.loads(Path(os.environ["FLAKY_SPEC"]).read_text()) if os.environ.get("FLAKY_SPEC") else {}
spec = {**spec_all.get("*", {}), **spec_all.get(worker, {})}
record_dir = Path(os.environ.get("FLAKY_RECORD", "."))
record_dir.mkdir(parents=True, exist_ok=True)
child = None
if spec.get("child"):  # a grandchild in the same process group, which must die with it
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
record = {"argv": sys.argv, "pid": os.getpid(), "pgid": os.getpgid(0), "tier": os.environ["RLM_COMPUTE_TIER"],
          "model": os.environ["RLM_MODEL"], "progress": os.environ.get("RLM_PROGRESS_PATH"),
          "child": child.pid if child else None, "prompt_bytes": len(prompt)}
tmp = record_dir / f".{worker}.{attempt}.tmp"
tmp.write_text(json.dumps(record))
os.replace(tmp, record_dir / f"{worker}.{attempt}.json")
print(f"fake agent {worker} attempt {attempt} started", flush=True)

if attempt in spec.get("hang", []):
    while True:
        time.sleep(3600)
if spec.get("progress"):  # alive but quiet in its log: only the progress file changes
    end = time.time() + float(spec.get("sleep", 0))
    while time.time() < end:
        Path(os.environ["RLM_PROGRESS_PATH"]).write_text(f"step at {time.time()}\n")
        time.sleep(float(spec["progress"]))
else:
    time.sleep(float(spec.get("sleep", 0)))
if attempt in spec.get("fail", []):
    print("failing on purpose", flush=True)
    raise SystemExit(3)
report = Path(os.environ["RLM_REPORT_PATH"])
report.parent.mkdir(parents=True, exist_ok=True)
if attempt in spec.get("invalid", []):
    report.write_text(f"# {worker}\n\nno required section here\n")
else:
    report.write_text(f"# {worker}\n\n## What I did\nattempt {attempt} on {os.environ['RLM_COMPUTE_TIER']}\n\n"
                      "## Contract Compliance\n- kept\n")
if child:
    child.kill()
    child.wait()
