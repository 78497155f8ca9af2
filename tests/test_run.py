"""End to end: doit runs the fake codex agent in tmp repos; failures, timeouts, reruns, fresh clones, the lock."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import LOCAL_RUN, REPO, RUN_DIR, Repo, doit_namespace, process_gone, subprocess_env

from rlm_tasks import jsonio
from rlm_tasks.run import attempts

REPORTS = f"{RUN_DIR}/artifacts/reports"
LOGS = f"{LOCAL_RUN}/logs"
DURATION = r"\d+\.\d+s"


def ok_line(name: str, report: str) -> str:
    return rf"  ok      {re.escape(name)}  {DURATION}  {re.escape(report)}"


def summary(ran: int, failed: int, fresh: int, not_started: int = 0) -> str:
    skipped = f", {not_started} not started" if not_started else ""
    return (rf"rlm: {ran} ran, {failed} failed{skipped}, {fresh} fresh in {DURATION}; "
            rf"inventory: {re.escape(RUN_DIR)}/reduce_state\.json")


def finished_lines(out: str) -> list[str]:
    """The console lines that report an outcome (start lines are progress, in nondeterministic order)."""
    return [line for line in out.splitlines() if not line.startswith("  start ")]


# ---- the happy path ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_first_doit_runs_every_worker_and_the_second_none(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"]}],
                     verify=[{"id": "v", "goal": "V", "depends_on": ["a", "b"]}])
    first = repo.doit()
    assert (first.code, first.err) == (0, ""), first.out
    lines = finished_lines(first.out)
    assert lines[0] == "rlm: run t: 3 tasks"
    assert re.fullmatch(ok_line("map:a", f"{REPORTS}/a.md"), lines[1])
    assert re.fullmatch(ok_line("map:b", f"{REPORTS}/b.md"), lines[2])
    assert re.fullmatch(ok_line("verify:v", f"{REPORTS}/v.md"), lines[3])
    assert re.fullmatch(summary(3, 0, 0), lines[4])
    assert len(lines) == 5
    assert [call["worker_id"] for call in repo.calls()] == ["a", "b", "v"]  # depends_on orders them
    assert [call["env"]["RLM_MODE"] for call in repo.calls()] == ["map", "map", "verify"]

    second = repo.doit()
    assert (second.code, second.err) == (0, "")
    assert len(repo.calls()) == 3  # no worker started
    assert [line for line in second.out.splitlines() if line.startswith("  ")] == []
    assert re.fullmatch(summary(0, 0, 3), second.out.splitlines()[-1])


def test_worker_output_goes_to_its_log_never_to_the_console(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}])
    result = repo.doit()
    assert result.code == 0
    assert "fake agent" not in result.out + result.err
    assert repo.path(f"{LOGS}/a.attempt-1.log").read_text() == (
        "fake agent: a attempt 1 in mode ok\n[usage] input 1000 (cached 200), output 100\n")  # the event, readable


def test_doit_state_lives_under_rlm_in_sqlite(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}], budget={"max_inflight": 3})
    with doit_namespace() as namespace:
        config = namespace["DOIT_CONFIG"]
    assert (config["dep_file"], config["backend"], config["num_process"]) == (
        str(repo.root.resolve() / ".rlm" / "local" / "doit.sqlite3"), "sqlite3", 3)
    assert repo.doit().code == 0
    assert (repo.root / ".rlm" / "local" / "doit.sqlite3").read_bytes()[:16] == b"SQLite format 3\x00"
    assert sorted(p.name for p in repo.root.iterdir() if p.name.startswith(".doit")) == []


def test_task_graph(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"],
                                                   "report_path": "notes/b.md"}],
                     verify=[{"id": "v", "goal": "V", "depends_on": ["b"]}])
    with doit_namespace() as namespace:
        maps = [t for t in namespace["task_map"]() if t.get("name")]
        verifies = [t for t in namespace["task_verify"]() if t.get("name")]
    root = repo.root.resolve()
    assert [(t["name"], t["targets"], t["task_dep"]) for t in maps] == [
        ("a", [str(root / REPORTS / "a.md")], ["plan"]),
        ("b", [str(root / "notes" / "b.md")], ["plan", "map:a"]),
    ]
    assert [(t["name"], t["targets"], t["task_dep"]) for t in verifies] == [
        ("v", [str(root / REPORTS / "v.md")], ["plan", "map:b"])]


def test_custom_report_path(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A", "report_path": "notes/deep/a.md"}])
    result = repo.doit()
    assert result.code == 0, result.out
    assert (repo.root / "notes" / "deep" / "a.md").read_text().startswith("# Report: a (map)\n")
    assert repo.rlm("check").code == 0


@pytest.mark.slow
def test_rlm_run_is_doit(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}])
    assert repo.rlm("run").code == 0
    assert repo.ran() == ["a", "b"]
    repo.report("b").unlink()
    result = repo.rlm("run", "-n", "1", "map:b")
    assert result.code == 0, result.out + result.err
    assert repo.ran() == ["a", "b", "b"]


def barrier_run(repo: Repo, wait: float) -> None:
    """Two tasks that each succeed only while the other runs at the same time: each waits for the other
    (up to `wait` seconds) at a barrier."""
    repo.write_codex([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], budget={"max_inflight": 2},
                     agent={"env": {"FAKE_AGENT_BARRIER_DIR": str(repo.root / "barrier")}})
    repo.agent_spec({"*": {"barrier": 2, "barrier_wait": wait}})


def test_doit_runs_max_inflight_workers_at_once(repo: Repo) -> None:
    barrier_run(repo, wait=60)  # both run at once: the second arrives as soon as doit starts it
    result = repo.doit()
    assert result.code == 0, result.out
    assert repo.report("a").exists() and repo.report("b").exists()


@pytest.mark.slow
def test_doit_n_overrides_max_inflight(repo: Repo) -> None:
    barrier_run(repo, wait=0.3)  # one at a time: the other cannot arrive while the first waits
    result = repo.doit("-n", "1")
    assert result.code == 1  # one at a time: the first waits alone at the barrier and gives up
    assert len([line for line in result.out.splitlines() if "FAILED" in line]) == 1
    assert [repo.report(t).exists() for t in "ab"].count(True) == 1


@pytest.mark.slow
def test_editing_one_goal_reruns_only_it_and_its_dependents(repo: Repo) -> None:
    tasks: list[dict[str, Any]] = [
        {"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"]},
        {"id": "c", "goal": "C"}, {"id": "d", "goal": "D", "depends_on": ["c"]},
    ]
    verify = [{"id": "v", "goal": "V", "depends_on": ["b"]}]
    repo.write_codex(tasks, verify=verify)
    assert repo.doit().code == 0
    assert repo.ran() == ["a", "b", "c", "d", "v"]
    tasks[0]["goal"] = "A, reworded"
    repo.write_codex(tasks, verify=verify)
    result = repo.doit()
    assert result.code == 0, result.out
    # b read a's new report; b's own report came out byte-identical, so v (which reads only b's) stays fresh
    assert [call["worker_id"] for call in repo.calls()[5:]] == ["a", "b"]
    assert re.fullmatch(summary(2, 0, 3), result.out.splitlines()[-1])
    assert repo.rlm("check").code == 0


# ---- failure modes ----------------------------------------------------------------------------------------

FAILURES = [
    ("no-report", "no_report: no report written", False),
    ("no-section", "invalid_report: report lacks required section 'Contract Compliance'", True),
    ("exit-1", "exit: agent exited with code 1", True),
    ("empty", "invalid_report: report is empty", True),
]


@pytest.mark.parametrize(("mode", "message", "rejected"), FAILURES, ids=[m for m, _, _ in FAILURES])
@pytest.mark.slow
def test_failed_worker_is_one_line_and_independent_tasks_complete(repo: Repo, mode: str, message: str,
                                                                  rejected: bool) -> None:
    repo.write_codex([{"id": "bad", "goal": "Fail."}, {"id": "good", "goal": "Succeed."},
                      {"id": "after", "goal": "Needs bad.", "depends_on": ["bad"]}], mode=f"bad={mode}")
    result = repo.doit()
    assert result.code == 1
    moved = f" (report moved to {REPORTS}/bad.attempt-1.rejected.md)" if rejected else ""
    lines = finished_lines(result.out)
    assert [line for line in lines if "FAILED" in line] == [
        f"  FAILED  map:bad: attempt 1, {message}{moved}; log: {LOGS}/bad.attempt-1.log"]
    assert "  SKIPPED map:after: a task it depends on failed" in lines
    assert any(re.fullmatch(ok_line("map:good", f"{REPORTS}/good.md"), line) for line in lines)
    assert re.fullmatch(summary(1, 1, 0, not_started=1), lines[-1])
    assert repo.ran() == ["bad", "good"]
    # nothing that failed looks done: no report at report_path, no provenance entry
    assert not repo.report("bad").exists()
    assert sorted(repo.provenance()["tasks"]) == ["good"]
    assert repo.path(f"{REPORTS}/bad.attempt-1.rejected.md").exists() is rejected
    assert repo.path(f"{LOGS}/bad.attempt-1.log").read_text().startswith(f"fake agent: bad attempt 1 in mode {mode}\n")


def test_rejected_report_keeps_what_the_worker_wrote(repo: Repo) -> None:
    repo.write_codex([{"id": "bad", "goal": "Fail."}], mode="no-section")
    assert repo.doit().code == 1
    rejected = repo.path(f"{REPORTS}/bad.attempt-1.rejected.md").read_text()
    assert rejected.startswith("# Report: bad (map)\n") and "## Evidence" in rejected
    assert "Contract Compliance" not in rejected


def test_required_sections_are_configurable(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A", "required_sections": ["Evidence", "Risk Register"]},
                      {"id": "b", "goal": "B", "required_sections": ["Key findings", "What I did"]}])
    result = repo.doit()
    assert result.code == 1
    assert [line for line in result.out.splitlines() if "FAILED" in line] == [
        f"  FAILED  map:a: attempt 1, invalid_report: report lacks required section 'Risk Register' (report moved to "
        f"{REPORTS}/a.attempt-1.rejected.md); log: {LOGS}/a.attempt-1.log"]
    assert repo.report("b").exists()


@pytest.mark.slow
def test_hang_past_the_timeout_kills_the_whole_process_group(repo: Repo) -> None:
    repo.write_codex([{"id": "slow", "goal": "Hang."}, {"id": "quick", "goal": "Finish."}],
                     mode="slow=hang", agent={"timeout": 1})
    result = repo.doit()
    assert result.code == 1
    lines = finished_lines(result.out)
    assert [line for line in lines if "FAILED" in line] == [
        f"  FAILED  map:slow: attempt 1, timeout: timed out after 1s; log: {LOGS}/slow.attempt-1.log"]
    assert any(re.fullmatch(ok_line("map:quick", f"{REPORTS}/quick.md"), line) for line in lines)
    [slow] = [call for call in repo.calls() if call["worker_id"] == "slow"]
    assert slow["child_pid"] is not None and slow["pgid"] == slow["pid"]  # its own process group
    assert process_gone(slow["pid"])
    assert process_gone(slow["child_pid"])  # the grandchild died with the group
    assert not repo.report("slow").exists()
    assert sorted(repo.provenance()["tasks"]) == ["quick"]


@pytest.mark.slow
def test_a_worker_ignoring_sigterm_is_killed_after_the_grace_period(repo: Repo) -> None:
    repo.write_codex([{"id": "stubborn", "goal": "Hang and ignore SIGTERM."}], mode="hang-hard",
                     agent={"timeout": 0.5})
    result = repo.doit()
    assert result.code == 1
    assert [line for line in result.out.splitlines() if "FAILED" in line] == [
        f"  FAILED  map:stubborn: attempt 1, timeout: timed out after 0.5s; log: {LOGS}/stubborn.attempt-1.log"]
    [call] = repo.calls()
    assert process_gone(call["pid"]) and process_gone(call["child_pid"])


@pytest.mark.slow
def test_many_parallel_workers_all_record_provenance(repo: Repo) -> None:
    ids = [f"w{i:02d}" for i in range(12)]
    repo.write_codex([{"id": i, "goal": f"Task {i}."} for i in ids], budget={"max_inflight": 6})
    result = repo.doit()
    assert result.code == 0, result.out
    assert sorted(repo.provenance()["tasks"]) == ids
    assert repo.rlm("check").code == 0
    assert len(repo.calls()) == 12
    assert repo.doit().code == 0
    assert len(repo.calls()) == 12


@pytest.mark.slow
def test_a_failed_task_runs_again_next_time_and_nothing_else_does(repo: Repo) -> None:
    tasks = [{"id": "bad", "goal": "Fail."}, {"id": "good", "goal": "Succeed."},
             {"id": "after", "goal": "Needs bad.", "depends_on": ["bad"]}]
    repo.write_codex(tasks, mode="bad=no-report")
    assert repo.doit().code == 1
    repo.write_codex(tasks, mode="ok")  # the agent's env is not part of the invocation: good stays fresh
    result = repo.doit()
    assert result.code == 0, result.out
    calls = [call["worker_id"] for call in repo.calls()]
    assert (sorted(calls[:2]), calls[2:]) == (["bad", "good"], ["bad", "after"])
    assert repo.rlm("check").code == 0


@pytest.mark.slow
def test_several_failures_exit_1_and_are_each_one_line(repo: Repo) -> None:
    repo.write_codex([{"id": m, "goal": m} for m in ("no-report", "no-section", "exit-1", "empty")] +
                     [{"id": "fine", "goal": "ok"}],
                     mode="no-report=no-report,no-section=no-section,exit-1=exit-1,empty=empty")
    result = repo.doit()
    assert result.code == 1
    failed = sorted(line for line in result.out.splitlines() if "FAILED" in line)
    assert len(failed) == 4
    for line in failed:
        assert re.fullmatch(rf"  FAILED  map:([a-z0-9-]+): .*; log: {LOGS}/\1\.attempt-1\.log", line), line
    assert re.fullmatch(summary(1, 4, 0), result.out.splitlines()[-1])


@pytest.mark.slow
def test_the_real_doit_cli_exits_1_when_a_worker_failed(repo: Repo) -> None:
    repo.write_codex([{"id": "bad", "goal": "Fail."}, {"id": "good", "goal": "Succeed."}], mode="bad=exit-1")
    result = repo.doit_cli()
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.out + result.err
    assert f"  FAILED  map:bad: attempt 1, exit: agent exited with code 1 (report moved to " \
           f"{REPORTS}/bad.attempt-1.rejected.md); " \
           f"log: {LOGS}/bad.attempt-1.log" in result.out.splitlines()
    assert repo.report("good").exists()


# ---- fresh clone ------------------------------------------------------------------------------------------

def git(*args: str, cwd: Path) -> str:
    env = {**subprocess_env(), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_fresh_clone_of_a_finished_run_runs_no_worker(repo: Repo, tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "src").mkdir()
    (origin / "src" / "a.txt").write_text("alpha\n")
    (origin / "docs").mkdir()
    (origin / "docs" / "x.md").write_text("# watched\n")
    repo.dodo(origin)
    origin_repo = Repo(origin, repo.monkeypatch, repo.capsys)
    origin_repo.log = repo.log  # outside both checkouts
    origin_repo.write_codex([
        {"id": "a", "goal": "A", "inputs": ["src/a.txt"], "watch": ["docs/*.md"]},
        {"id": "b", "goal": "B", "depends_on": ["a"], "compute_tier": "heavy"},
    ], verify=[{"id": "v", "goal": "V", "depends_on": ["a", "b"]}])
    (origin / ".gitignore").write_text("/.rlm/local/\n")
    result = origin_repo.doit_cli()
    assert result.code == 0, result.out + result.err
    assert len(repo.calls()) == 3
    git("init", "-q", cwd=origin)
    git("add", "-A", cwd=origin)
    git("commit", "-q", "-m", "finished run", cwd=origin)
    committed = git("ls-files", cwd=origin).splitlines()
    assert f"{RUN_DIR}/provenance.json" in committed and f"{REPORTS}/b.md" in committed
    assert not any(path.startswith(".rlm/local/") for path in committed)

    git("clone", "-q", str(origin), str(tmp_path / "clone"), cwd=tmp_path)
    clone = tmp_path / "clone"
    assert not (clone / ".rlm" / "local" / "doit.sqlite3").exists()
    check = origin_repo.rlm_cli("check", cwd=clone)
    assert (check.code, check.out) == (0, "run t: 3 tasks: 3 fresh, 0 stale, 0 missing, 0 invalid\n"), check.err
    run = origin_repo.doit_cli(cwd=clone)
    assert run.code == 0, run.out + run.err
    assert len(repo.calls()) == 3  # no worker started in the clone
    assert re.fullmatch(summary(0, 0, 3), run.out.splitlines()[-1])


# ---- one run at a time ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_doit_on_the_same_run_exits_3_naming_the_holder(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}])
    holder = repo.hold_lock()
    started_at = jsonio.read_json(repo.root / ".rlm" / "local" / "locks" / "t.holder.json")["started_at"]
    result = repo.doit_cli(timeout=30)
    holder.release()
    assert (result.code, result.out) == (3, "")
    assert result.err == (f"rlm: run 't' is locked by another process (pid {holder.pid} on host "
                          f"{socket.gethostname()}, started {started_at}); lock: .rlm/local/locks/t.lock\n")
    assert repo.calls() == []


@pytest.mark.slow
def test_a_crashed_holder_never_blocks_the_next_run(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}])
    repo.hold_lock().crash()
    result = repo.doit()
    assert result.code == 0, result.out + result.err
    assert repo.ran() == ["a"]


# ---- the repository's own example -------------------------------------------------------------------------

@pytest.mark.slow
def test_the_root_example_runs_and_every_task_is_fresh(tmp_path: Path) -> None:
    copy = tmp_path / "example"
    copy.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("rlm_tasks", "examples"):
        shutil.copytree(REPO / name, copy / name, symlinks=True, ignore=ignore)
    for name in ("rlm.yaml", "dodo.py", "README.md", "pyproject.toml"):
        shutil.copy(REPO / name, copy / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RLM_CONFIG")}
    run = subprocess.run([sys.executable, "-m", "doit"], cwd=copy, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    check = subprocess.run([sys.executable, "-m", "rlm_tasks", "check"], cwd=copy, env=env, capture_output=True,
                           text=True, timeout=60)
    assert (check.returncode, check.stdout) == (0, "run example: 6 tasks: 6 fresh, 0 stale, 0 missing, 0 invalid\n")
    again = subprocess.run([sys.executable, "-m", "doit"], cwd=copy, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0
    assert re.fullmatch(r"rlm: 0 ran, 0 failed, 6 fresh in \d+\.\d+s; "
                        r"inventory: \.rlm/runs/example/reduce_state.json",
                        again.stdout.splitlines()[-1])


def test_console_script_entry_and_python_m(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm_tasks.cli.main import entry

    repo.write_codex([{"id": "a", "goal": "A"}])
    monkeypatch.setattr(sys, "argv", ["rlm", "validate"])
    with pytest.raises(SystemExit) as caught:
        entry()
    assert caught.value.code == 0
    result = repo.rlm_cli("validate")
    assert (result.code, result.out) == (0, "rlm.yaml: valid: run t, 1 map tasks, 0 verify tasks\n")


def test_a_bug_in_a_worker_task_is_one_line_and_a_crash_log(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    repo.write_command([{"id": "a", "goal": "A"}])
    monkeypatch.setattr(attempts, "run_task", broken)
    result = repo.doit()
    assert result.code == 1
    assert ("  FAILED  map:a: unexpected error (details in .rlm/local/rlm-crash.log); please report it"
            in result.lines), result.out
    assert repo.path(".rlm/local/rlm-crash.log").read_text().endswith("RuntimeError: a bug\n")


def test_a_symlinked_rlm_yaml_keeps_the_run_where_the_link_is(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    (repo.root / "configs").mkdir()
    os.rename(repo.root / "rlm.yaml", repo.root / "configs/rlm.yaml")
    os.symlink("configs/rlm.yaml", repo.root / "rlm.yaml")  # the run's state went into configs/.rlm/
    assert repo.doit().code == 0
    assert repo.report("a").exists()
    assert repo.rlm("status").lines[0] == "run t: 1 tasks: 1 fresh, 0 stale, 0 missing, 0 invalid"
    assert os.listdir(repo.root / "configs") == ["rlm.yaml"]
