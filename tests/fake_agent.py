#!/usr/bin/env python3
"""The one fake agent of the tests: behaves as `codex exec` or as a `kind: command` worker, as its config says.

    fake_agent.py exec -m MODEL [-c KEY=VALUE]... -C ROOT (--sandbox MODE | --dangerously-bypass-approvals-and-sandbox)
                  [extra args]... -          codex's argv (checked: anything else fails, exit 1); the report goes to
                                             ROOT/<report_path of the prompt's JSON envelope>, as codex writes it
    fake_agent.py [anything]                 a `kind: command` worker; the report goes to $RLM_REPORT_PATH

What it does comes from its config, read at every start: $FAKE_AGENT_SPEC names a JSON file
{"<worker_id>" | "*": BEHAVIOUR}, and $FAKE_AGENT_MODE holds short names, `MODE` (every worker) or
`WORKER_ID=MODE`, comma-separated (see MODES). A worker's own entry wins over "*" and the mode. BEHAVIOUR keys:

    report       "ok" (default: every section and the task's goal) | "none" (no report) |
                 "no-section" (no Contract Compliance) | "empty" | "stdout" (printed, for `report: stdout`)
    text         the report's text instead of the default one; {worker_id} and {attempt} in it are replaced
    exit         exit code once done (default 0)
    sleep        seconds of work before reporting
    wait_for     a path: work until it exists (the test decides when the worker finishes)
    append       {"<path>": "<text>"}: append to these files (relative to the working directory) while working
    progress     while sleeping, rewrite $RLM_PROGRESS_PATH every this many seconds
    child        start a child in the same process group (a timeout or signal must end it too)
    hang         never finish (with `child`, neither does the child)
    ignore_term  ignore SIGTERM (it and its child): only SIGKILL ends it
    barrier      wait until this many ($FAKE_AGENT_BARRIER_N if set) workers have reached the barrier in
                 $FAKE_AGENT_BARRIER_DIR; still short of them after `barrier_wait` seconds (default 2), exit 2
                 without a report
    escape       a path: first double-fork a grandchild that calls setsid and clears its whole environment (execve
                 with env {}), which then writes its pid to this path and sleeps; neither process group nor
                 attempt tag leads to it. The worker waits for the path, and fails (exit 4) if that grandchild
                 died before the worker reports: nothing may end a running worker's descendants
    escape_middle_stays  with `escape`: the middle process (tagged, in its own session) sleeps instead of exiting,
                 so the grandchild is an orphan only once the runner has killed the middle
    wait_text    [path, text]: after the barrier, work until that file holds that text
    attempts     {"<attempt>": BEHAVIOUR}: overrides for one attempt ($RLM_ATTEMPT), e.g. fail only the first
    events       JSON events it prints on stdout (as codex with `--json`: e.g. an `error` and a `turn.failed`)
    usage        token usage it reports: as codex with `--json` (the runner's event stream) a `turn.completed`
                 event with this usage (default USAGE) on stdout; as a command worker, written to
                 $RLM_USAGE_PATH (only when given; a string as it is, anything else as JSON); as another
                 kind ($FAKE_AGENT_KIND), that kind's own events for it (its `sample_events`) on stdout

With $FAKE_AGENT_KIND naming an agent kind of rlm_tasks/agents/ (gemini, opencode, ...), it takes any argv,
works in its working directory (the repository root) as those CLIs do, and prints that kind's events.

Every start appends one JSON line to $FAKE_AGENT_LOG: argv, stdin (base64), the RLM_* environment, cwd, pid, ppid,
process group and its start time, the child's pid, worker id, attempt, tier, behaviour.
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
from typing import Any

SECTIONS = ("What I did", "Key findings", "Evidence", "Open questions / risks", "Deferred opportunities",
            "Contract Compliance")
FAIL = {"exit": 3, "report": "none"}
MODES: dict[str, dict[str, Any]] = {
    "ok": {},
    "no-report": {"report": "none"},
    "no-section": {"report": "no-section"},
    "empty": {"report": "empty"},
    "exit-1": {"exit": 1},
    "fail": FAIL,
    "hang": {"hang": True, "child": True},
    "hang-hard": {"hang": True, "child": True, "ignore_term": True},
    "barrier": {"barrier": 2},
    "stdout": {"report": "stdout"},
}
REPORTS = ("ok", "none", "no-section", "empty", "stdout")
USAGE = {"input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 100, "reasoning_output_tokens": 10}


def parse_codex_argv(argv: list[str]) -> dict[str, Any]:
    """codex exec's argv as the runner builds it; anything else exits 1 with the argv, so it fails the test."""
    parsed: dict[str, Any] = {"model": None, "config": [], "root": None, "sandbox": None, "bypass": False,
                              "extra": []}
    rest = argv[1:]
    if not rest or rest[-1] != "-":
        raise SystemExit(f"fake agent: expected '-' (prompt on stdin) last, got {argv!r}")
    rest = rest[:-1]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in ("-m", "-c", "-C", "--sandbox"):
            key = {"-m": "model", "-c": "config", "-C": "root", "--sandbox": "sandbox"}[arg]
            if key == "config":
                parsed["config"].append(rest[i + 1])
            else:
                parsed[key] = rest[i + 1]
            i += 2
        elif arg == "--dangerously-bypass-approvals-and-sandbox":
            parsed["bypass"] = True
            i += 1
        else:
            parsed["extra"].append(arg)
            i += 1
    if parsed["root"] is None or parsed["model"] is None:
        raise SystemExit(f"fake agent: -m and -C are required, got {argv!r}")
    return parsed


def behaviour_for(worker_id: str, attempt: int) -> tuple[str, dict[str, Any]]:
    """(a name for the log, the behaviour) from $FAKE_AGENT_MODE and the $FAKE_AGENT_SPEC file."""
    name = "ok"
    for entry in filter(None, (e.strip() for e in os.environ.get("FAKE_AGENT_MODE", "").split(","))):
        who, named, what = entry.partition("=")
        if not named:
            name = who  # every worker, unless named on its own
        elif who == worker_id:
            name = what
            break
    if name not in MODES:
        raise SystemExit(f"fake agent: unknown FAKE_AGENT_MODE {name!r}")
    chosen = MODES[name]
    spec_path = os.environ.get("FAKE_AGENT_SPEC")
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8")) if spec_path and Path(spec_path).exists() else {}
    if "*" in spec or worker_id in spec:
        name = "spec"
        chosen = {**chosen, **spec.get("*", {}), **spec.get(worker_id, {})}
    overrides = chosen.get("attempts", {}).get(str(attempt), {})
    behaviour = {**chosen, **overrides}
    behaviour.pop("attempts", None)
    if behaviour.get("report", "ok") not in REPORTS:
        raise SystemExit(f"fake agent: unknown report {behaviour['report']!r}")
    return name, behaviour


def log(record: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_AGENT_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))  # one write: no interleaving
    finally:
        os.close(fd)


def start_ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def report_text(envelope: dict[str, Any], *, with_compliance: bool = True) -> str:
    # the goal is in the report, so a changed goal changes the report (and what depends on it)
    worker_id = envelope["worker_id"]
    lines = [f"# Report: {worker_id} ({envelope.get('mode', 'map')})", "", f"Task: {envelope.get('goal', '')}", ""]
    for section in SECTIONS:
        if section == "Contract Compliance" and not with_compliance:
            continue
        lines += [f"## {section}", f"- {section.lower()} of {worker_id}", ""]
    return "\n".join(lines)


def barrier(worker_id: str, count: int, wait: float) -> bool:
    """True once `count` workers are running at the same time (each leaves a file)."""
    directory = Path(os.environ["FAKE_AGENT_BARRIER_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / worker_id).touch()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if len(list(directory.iterdir())) >= count:
            return True
        time.sleep(0.02)
    return False


ESCAPEE = """\
import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


def escape(pid_file: str, middle_stays: bool) -> int:
    """A grandchild out of our process group and session, with an empty environment; its pid."""
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve(sys.executable, [sys.executable, "-c", ESCAPEE, pid_file], {})
        while middle_stays:
            time.sleep(3600)
        os._exit(0)
    if not middle_stays:
        os.waitpid(middle, 0)  # the grandchild is now nobody's child: init's, or a subreaper's
    while not os.path.exists(pid_file):  # written after the exec: the environment is empty by now
        time.sleep(0.01)
    return int(Path(pid_file).read_text(encoding="ascii"))


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def work(seconds: float, progress_every: float | None) -> None:
    """Simulated work; with `progress_every`, alive but quiet in its log: only the progress file changes."""
    end = time.monotonic() + seconds
    while progress_every and time.monotonic() < end:
        Path(os.environ["RLM_PROGRESS_PATH"]).write_text(f"step at {time.time()}\n", encoding="utf-8")
        time.sleep(progress_every)
    time.sleep(max(0.0, end - time.monotonic()))


def kind_events(kind_name: str, usage: dict[str, Any], text: str) -> None:
    """Print the events kind `kind_name` prints for a turn with this usage (codex's USAGE keys)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from rlm_tasks.agents import KINDS
    from rlm_tasks.agents.base import Usage

    spent = Usage(input_tokens=usage.get("input_tokens", 0), cached_input_tokens=usage.get("cached_input_tokens", 0),
                  output_tokens=usage.get("output_tokens", 0), reasoning_tokens=usage.get("reasoning_output_tokens", 0),
                  model=os.environ.get("RLM_MODEL"))
    for event in KINDS[kind_name].sample_events(spent, text):
        print(json.dumps(event), flush=True)


def main() -> int:
    if sys.argv[1:] == ["--version"]:  # the runner's agent check before a run's first attempt: not a worker start
        print("fake-agent 1.0")
        return 0
    kind_name = os.environ.get("FAKE_AGENT_KIND")
    codex = sys.argv[1:2] == ["exec"] and not kind_name
    parsed = parse_codex_argv(sys.argv[1:]) if codex else None
    stdin = sys.stdin.buffer.read()
    match = re.search(r"```json\n(.*?)\n```", stdin.decode("utf-8"), re.S)
    if (codex or kind_name) and not match:
        print("fake agent: no ```json envelope in the prompt", flush=True)
        return 65
    envelope = json.loads(match.group(1)) if match else {}
    worker_id = str(envelope.get("worker_id") or os.environ["RLM_WORKER_ID"])
    envelope.setdefault("worker_id", worker_id)
    attempt = int(os.environ.get("RLM_ATTEMPT", "1"))
    tier = os.environ.get("RLM_COMPUTE_TIER", "")
    mode, behaviour = behaviour_for(worker_id, attempt)
    if behaviour.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = None
    if behaviour.get("child"):  # a grandchild in our process group: ending the worker must end it too
        ignore = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" * bool(behaviour.get("ignore_term"))
        child = subprocess.Popen([sys.executable, "-c", ignore + "import time\nwhile True: time.sleep(3600)"])
    escapee = None
    if behaviour.get("escape"):
        escapee = escape(behaviour["escape"], bool(behaviour.get("escape_middle_stays")))
    log({
        "argv": sys.argv, "parsed": parsed, "stdin_b64": base64.b64encode(stdin).decode("ascii"),
        "env": {k: v for k, v in os.environ.items() if k.startswith("RLM_")}, "cwd": os.getcwd(),
        "pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "pid_start_ticks": start_ticks(os.getpid()),
        "child": child.pid if child else None, "child_pid": child.pid if child else None, "escapee": escapee,
        "escapee_start_ticks": start_ticks(escapee) if escapee else None,
        "worker_id": worker_id, "attempt": attempt, "tier": tier, "model": os.environ.get("RLM_MODEL"),
        "progress": os.environ.get("RLM_PROGRESS_PATH"), "prompt_bytes": len(stdin), "mode": mode,
        "behaviour": behaviour,
    })
    report_kind = behaviour.get("report", "ok")
    if report_kind != "stdout":
        print(f"fake agent: {worker_id} attempt {attempt} in mode {mode}", flush=True)
    for event in behaviour.get("events", []):  # what the agent says on its event stream, e.g. an API error
        print(json.dumps(event), flush=True)
    if parsed and "--json" in parsed["extra"] and not behaviour.get("hang") and not behaviour.get("events"):
        print(json.dumps({"type": "turn.completed", "usage": behaviour.get("usage", USAGE)}), flush=True)
    if kind_name and not behaviour.get("hang"):
        kind_events(kind_name, behaviour.get("usage", USAGE), f"{worker_id} done")
    if behaviour.get("hang"):
        while True:
            time.sleep(3600)
    for name, more in behaviour.get("append", {}).items():
        with open(name, "a", encoding="utf-8") as handle:
            handle.write(more)
    work(float(behaviour.get("sleep", 0)), behaviour.get("progress"))
    while behaviour.get("wait_for") and not Path(behaviour["wait_for"]).exists():
        time.sleep(0.02)
    count = int(os.environ.get("FAKE_AGENT_BARRIER_N") or behaviour.get("barrier") or 0)
    if count and not barrier(worker_id, count, float(behaviour.get("barrier_wait", 2.0))):
        print("fake agent: nobody else reached the barrier", flush=True)
        return 2
    if behaviour.get("wait_text"):
        path, wanted = behaviour["wait_text"]
        while not (Path(path).exists() and wanted in Path(path).read_text(encoding="utf-8")):
            time.sleep(0.02)
    if escapee is not None and not running(escapee):
        print(f"fake agent: my grandchild {escapee} was ended while I ran", flush=True)
        return 4
    text = (behaviour.get("text", "").replace("{worker_id}", worker_id).replace("{attempt}", str(attempt))
            or report_text(envelope, with_compliance=report_kind != "no-section"))
    if report_kind == "stdout":
        sys.stdout.write(text)
    elif report_kind != "none":
        report = (Path(parsed["root"]) / str(envelope["report_path"]) if parsed
                  else Path(str(envelope["report_path"])) if kind_name else Path(os.environ["RLM_REPORT_PATH"]))
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("" if report_kind == "empty" else text, encoding="utf-8")
    if not parsed and not kind_name and behaviour.get("usage"):
        usage = behaviour["usage"]  # a string is written as it is (e.g. to test a broken usage file)
        Path(os.environ["RLM_USAGE_PATH"]).write_text(usage if isinstance(usage, str) else json.dumps(usage),
                                                      encoding="utf-8")
    if child:
        child.kill()
        child.wait()
    code = int(behaviour.get("exit", 0))
    if code:
        print(f"fake agent: exiting with {code} on purpose", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
