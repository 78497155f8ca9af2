"""A Dask worker process that dies (SIGKILL) takes its agents with it (the watchdog), and the retry of the lost
attempt starts only once the old attempt's processes are known to be gone: one task never has two agents."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAKE_AGENT, Repo, subprocess_env, wait_for

distributed = pytest.importorskip("distributed")
DASK = str(Path(sys.executable).parent / "dask")

# Runs before the fake agent: records which earlier attempts' process groups still run as this one starts.
CHECK_THEN_EXEC = textwrap.dedent("""\
    import json, os, sys
    log, overlaps = sys.argv[1], sys.argv[2]
    alive = []
    if os.path.exists(log):
        for line in open(log):
            pgid = json.loads(line)["pgid"]
            try:
                os.killpg(pgid, 0)
                stat = open(f"/proc/{pgid}/stat").read()
                if stat[stat.rfind(")") + 2] not in "ZX":
                    alive.append(pgid)
            except OSError:
                pass
    with open(overlaps, "a") as out:
        out.write(json.dumps({"attempt": os.environ["RLM_ATTEMPT"], "alive": alive}) + "\\n")
    os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
""")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    base = tmp_path / "dask-cluster"
    base.mkdir()
    scheduler_file = base / "scheduler.json"
    # the dead worker's watchdog gives the agent 10 s of grace: only the retry's own check can end it sooner
    common = {"cwd": base, "env": subprocess_env(RLM_KILL_GRACE_SECONDS="10"), "stdout": subprocess.DEVNULL,
              "stderr": subprocess.DEVNULL, "start_new_session": True}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(scheduler_file)], **common)]  # type: ignore[call-overload]
    try:
        wait_for(scheduler_file.exists, "the scheduler file", timeout=60)
        procs.append(subprocess.Popen([DASK, "worker", "--scheduler-file", str(scheduler_file), "--host",
                                       "127.0.0.1", "--nthreads", "2", "--no-dashboard",
                                       "--local-directory", str(base / "w")], **common))  # type: ignore[call-overload]
        with distributed.Client(scheduler_file=str(scheduler_file), set_as_default=False, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            address = client.scheduler.address
        yield address, scheduler_file
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_lost_attempt_is_retried_only_once_its_processes_are_gone(repo: Repo, tmp_path: Path,
                                                                      cluster: tuple[str, Path]) -> None:
    address = cluster[0]
    overlaps = tmp_path / "overlaps.jsonl"
    (tmp_path / "check.py").write_text(CHECK_THEN_EXEC)
    data = repo.write_command([{"id": "a", "goal": "A", "retries": 2}],
                              {"a": {"attempts": {"1": {"hang": True, "child": True, "ignore_term": True}}}})
    data["agent"]["command"] = ["{{ python }}", str(tmp_path / "check.py"), str(repo.log), str(overlaps),
                                str(FAKE_AGENT), "--model", "{{ model }}", "--effort", "{{ effort }}"]
    repo.write(data)
    run = repo.start_doit(RLM_EXECUTOR=address)
    wait_for(lambda: len(repo.calls()) == 1, "the first attempt", 60)
    first = repo.calls()[0]
    os.kill(first["ppid"], signal.SIGKILL)  # the Dask worker process running it (its nanny starts another)
    code, out = run.finish(timeout=120)
    assert code == 0, out
    assert repo.group_gone(first["pgid"])
    seen = [json.loads(line) for line in overlaps.read_text().splitlines()]
    assert [s["attempt"] for s in seen][:1] == ["1"] and len(seen) >= 2
    assert all(s["alive"] == [] for s in seen), seen  # no attempt started while an earlier one still ran
    assert repo.provenance()["tasks"]["a"]["attempt"] >= 2
