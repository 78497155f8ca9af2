#!/usr/bin/env python3
"""Benchmark agent: reads the prompt, sleeps argv[1] seconds, writes a valid report (under rlm)."""

import os
import sys
import time
from pathlib import Path

if "RLM_REPORT_PATH" in os.environ:
    sys.stdin.read()
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
if "RLM_REPORT_PATH" in os.environ:  # the bare baseline runs the same sleep without rlm
    report = Path(os.environ["RLM_REPORT_PATH"])
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(f"# {os.environ['RLM_WORKER_ID']}\n\n## Contract Compliance\n- kept\n", encoding="utf-8")
