#!/usr/bin/env python3
"""A `kind: command` worker for tests: writes $SCRIPTED_REPORTS/<worker_id>.md as its report.

Without a scripted file it writes a default report with every section. With
SCRIPTED_FAIL naming worker ids (comma-separated) it exits 1 without a report.
"""

import os
import sys
from pathlib import Path

sys.stdin.read()  # the prompt; a real agent would act on it
worker = os.environ["RLM_WORKER_ID"]
if worker in os.environ.get("SCRIPTED_FAIL", "").split(","):
    print("scripted failure")
    raise SystemExit(1)
scripted = Path(os.environ.get("SCRIPTED_REPORTS", "/nonexistent")) / f"{worker}.md"
if scripted.exists():
    text = scripted.read_text(encoding="utf-8")
else:
    text = (f"# {worker}\n\n## What I did\nRead.\n\n## Key findings\n- ok\n\n## Evidence\n- none\n\n"
            "## Open questions / risks\n- none\n\n## Deferred opportunities\nNone identified.\n\n"
            "## Contract Compliance\n- kept\n")
report = Path(os.environ["RLM_REPORT_PATH"])
report.parent.mkdir(parents=True, exist_ok=True)
report.write_text(text, encoding="utf-8")
