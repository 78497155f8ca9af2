#!/usr/bin/env python3
"""A fake `codex` for the core runner's tests: takes codex's argv, reads the prompt on stdin, writes the report.

    fake_codex.py exec -m MODEL [-c KEY=VALUE]... -C ROOT (--sandbox MODE | --dangerously-bypass-approvals-and-sandbox)
                  [extra args]... -

The report goes to the JSON envelope's `report_path`, relative to ROOT (-C), as
codex would write it. Behaviour comes from $FAKE_AGENT_MODE: comma-separated
entries, either `MODE` (every worker) or `WORKER_ID=MODE` (that worker only):

    ok          the report with all six sections and the task's goal (default)
    no-report   exits 0 without writing a report
    no-section  a report without the Contract Compliance section
    exit-1      writes a good report, then exits 1
    hang        spawns a child (same process group) and both sleep forever
    hang-hard   like hang, but both ignore SIGTERM: only SIGKILL ends them
    empty       writes an empty report
    barrier     waits (up to 2 s) until $FAKE_AGENT_BARRIER_N workers have reached the barrier in
                $FAKE_AGENT_BARRIER_DIR, then reports; alone past the wait, exits 2 without a report

Every start appends one JSON line to $FAKE_AGENT_LOG (when set): argv, the raw
stdin (base64), the RLM_* environment, cwd, pid, process group, the child's pid.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

MODES = ("ok", "no-report", "no-section", "exit-1", "hang", "hang-hard", "empty", "barrier")
SECTIONS = ("What I did", "Key findings", "Evidence", "Open questions / risks", "Deferred opportunities",
            "Contract Compliance")


def parse_argv(argv: list[str]) -> dict[str, object]:
    """codex exec's argv as the runner builds it; exits 64 on anything else, so a wrong argv fails the test."""
    if not argv or argv[0] != "exec":
        raise SystemExit(f"fake codex: expected 'exec' first, got {argv!r}")
    parsed: dict[str, object] = {"model": None, "config": [], "root": None, "sandbox": None, "bypass": False,
                                 "extra": []}
    rest = argv[1:]
    if not rest or rest[-1] != "-":
        raise SystemExit(f"fake codex: expected '-' (prompt on stdin) last, got {argv!r}")
    rest = rest[:-1]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "-m":
            parsed["model"] = rest[i + 1]
            i += 2
        elif arg == "-c":
            parsed["config"].append(rest[i + 1])  # type: ignore[union-attr]
            i += 2
        elif arg == "-C":
            parsed["root"] = rest[i + 1]
            i += 2
        elif arg == "--sandbox":
            parsed["sandbox"] = rest[i + 1]
            i += 2
        elif arg == "--dangerously-bypass-approvals-and-sandbox":
            parsed["bypass"] = True
            i += 1
        else:
            parsed["extra"].append(arg)  # type: ignore[union-attr]
            i += 1
    if parsed["root"] is None or parsed["model"] is None:
        raise SystemExit(f"fake codex: -m and -C are required, got {argv!r}")
    return parsed


def mode_for(worker_id: str) -> str:
    mode = "ok"
    for entry in filter(None, (e.strip() for e in os.environ.get("FAKE_AGENT_MODE", "").split(","))):
        if "=" in entry:
            who, what = entry.split("=", 1)
            if who == worker_id:
                return what
        else:
            mode = entry
    return mode


def log(record: dict[str, object]) -> None:
    path = os.environ.get("FAKE_AGENT_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))  # one write: no interleaving
    finally:
        os.close(fd)


def report_text(envelope: dict[str, object], *, with_compliance: bool = True) -> str:
    # the goal is in the report, so a changed goal changes the report (and what depends on it)
    lines = [f"# Report: {envelope['worker_id']} ({envelope['mode']})", "", f"Task: {envelope['goal']}", ""]
    for section in SECTIONS:
        if section == "Contract Compliance" and not with_compliance:
            continue
        lines += [f"## {section}", f"- {section.lower()} of {envelope['worker_id']}", ""]
    return "\n".join(lines)


def barrier(worker_id: str, wait: float = 2.0) -> bool:
    """True once $FAKE_AGENT_BARRIER_N workers are running at the same time (each leaves a file)."""
    directory = Path(os.environ["FAKE_AGENT_BARRIER_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / worker_id).touch()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if len(list(directory.iterdir())) >= int(os.environ["FAKE_AGENT_BARRIER_N"]):
            return True
        time.sleep(0.02)
    return False


def main() -> int:
    parsed = parse_argv(sys.argv[1:])
    stdin = sys.stdin.buffer.read()
    prompt = stdin.decode("utf-8")
    match = re.search(r"```json\n(.*?)\n```", prompt, re.S)
    if not match:
        print("fake codex: no ```json envelope in the prompt", flush=True)
        return 65
    envelope = json.loads(match.group(1))
    worker_id = str(envelope["worker_id"])
    mode = mode_for(worker_id)
    if mode not in MODES:
        print(f"fake codex: unknown FAKE_AGENT_MODE {mode!r}", flush=True)
        return 64
    child = None
    if mode.startswith("hang"):  # a grandchild in our process group: a timeout must end it too
        ignore = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if mode == "hang-hard" else ""
        if mode == "hang-hard":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", ignore + "import time\nwhile True: time.sleep(3600)"])
    log({
        "argv": sys.argv,
        "parsed": parsed,
        "stdin_b64": base64.b64encode(stdin).decode("ascii"),
        "env": {k: v for k, v in os.environ.items() if k.startswith("RLM_")},
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "child_pid": child.pid if child else None,
        "worker_id": worker_id,
        "mode": mode,
    })
    print(f"fake codex: {worker_id} in mode {mode}", flush=True)
    if mode.startswith("hang"):
        while True:
            time.sleep(3600)
    if mode == "no-report":
        return 0
    if mode == "barrier" and not barrier(worker_id):
        print("fake codex: nobody else reached the barrier", flush=True)
        return 2
    report = Path(str(parsed["root"])) / str(envelope["report_path"])
    report.parent.mkdir(parents=True, exist_ok=True)
    if mode == "empty":
        report.write_text("", encoding="utf-8")
        return 0
    report.write_text(report_text(envelope, with_compliance=mode != "no-section"), encoding="utf-8")
    if mode == "exit-1":
        print("fake codex: failing on purpose after writing the report", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
