"""doit's own verbs mean what doit users expect: list, info, forget, clean, final; `rlm run` bare ids, --force."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import REPO, RUN_DIR, Repo

from rlm_tasks.layout import RunLayout
from rlm_tasks.run.runstate import Run
from rlm_tasks.state.context import load_context
from rlm_tasks.tasks import task_generators

REPORTS = f"{RUN_DIR}/artifacts/reports"
HISTORY = f"{RUN_DIR}/artifacts/history"


@pytest.fixture
def done(repo: Repo) -> Repo:
    """A finished run through the real `doit`: map a, map b (reads a), verify v."""
    shutil.copy(REPO / "dodo.py", repo.root / "dodo.py")
    repo.write_codex([{"id": "a", "goal": "Map the parser.\nIn depth."}, {"id": "b", "goal": "B", "depends_on": ["a"]}],
                     verify=[{"id": "v", "goal": "Check a.", "depends_on": ["a"]}])
    first = repo.doit_cli()
    assert first.code == 0 and repo.ran() == ["a", "b", "v"], first.out + first.err
    repo.log.unlink()
    return repo


def ran_now(repo: Repo) -> list[str]:
    ran = repo.ran()
    repo.log.unlink(missing_ok=True)
    return ran


def summary(out: str) -> str:
    return re.sub(r"in \d+\.\d+s", "in Ns", out.splitlines()[-1])


@pytest.mark.slow
def test_doit_list_shows_every_task_with_its_goals_first_line(done: Repo) -> None:
    listed = done.doit_cli("list")
    assert listed.code == 0
    names = [line.split()[0] for line in listed.lines]
    assert names == ["archive", "deferred", "final", "map", "map:a", "map:b", "plan", "reduce", "report", "verify",
                     "verify:v"]
    assert "map:a      Map the parser." in listed.lines
    assert "verify:v   Check a." in listed.lines


@pytest.mark.slow
def test_doit_info_says_why_a_task_is_stale(done: Repo) -> None:
    fresh = done.doit_cli("info", "map:a")
    assert fresh.code == 0 and "status     : up-to-date" in fresh.lines, fresh.out
    assert ("meta       : {   'rlm': fresh: the report is valid and every digest in provenance.json matches "
            "today's}") in fresh.lines, fresh.out
    config = done.root / "rlm.yaml"
    config.write_text(config.read_text().replace("Map the parser.", "Map the lexer."))
    stale = done.doit_cli("info", "map:a")
    assert stale.code == 1
    assert ("    - rlm provenance: stale (prompt_changed); `rlm status` explains every reason (args=[], kwargs={})"
            in stale.lines), stale.out
    assert "meta       : {'rlm': stale (prompt_changed)}" in stale.lines


@pytest.mark.parametrize("how", ["doit forget", "rlm run --force"])
@pytest.mark.slow
def test_forget_or_force_runs_a_fresh_task_again_and_keeps_its_report(done: Repo, how: str) -> None:
    before = (done.root / REPORTS / "a.md").read_bytes()
    if how == "doit forget":
        forgot = done.doit_cli("forget", "map:a")
        assert (forgot.code, forgot.out) == (0, "forgetting map:a\n")
        assert done.rlm_cli("check").code == 0  # provenance still says fresh: only doit was told
        info = done.doit_cli("info", "map:a")
        assert ("    - rlm provenance: forgotten (`doit forget` or `rlm run --force`): runs again though its report "
                "is fresh; `rlm status` explains every reason (args=[], kwargs={})") in info.lines, info.out
        again = done.doit_cli()
    else:
        again = done.rlm_cli("run", "--force", "a")
    assert again.code == 0, again.out + again.err
    assert ran_now(done)[0] == "a"
    assert (done.root / HISTORY / "a/1.md").read_bytes() == before  # the earlier report went to history
    assert done.provenance()["tasks"]["a"]["attempt"] == 2
    assert summary(done.doit_cli().out).startswith("rlm: 0 ran, 0 failed, 3 fresh")  # forgotten once, not forever
    assert ran_now(done) == []


@pytest.mark.slow
def test_a_missing_doit_database_is_only_a_missing_cache(done: Repo) -> None:
    (done.root / ".rlm/local/doit.sqlite3").unlink()
    assert summary(done.doit_cli().out) == (
        "rlm: 0 ran, 0 failed, 3 fresh in Ns; inventory: .rlm/runs/t/reduce_state.json")
    assert ran_now(done) == []


@pytest.mark.slow
def test_doit_clean_moves_reports_and_provenance_to_history(done: Repo) -> None:
    entry = done.provenance()["tasks"]["a"]
    report = (done.root / REPORTS / "a.md").read_bytes()
    cleaned = done.doit_cli("clean", "map:a")
    assert cleaned.code == 0
    assert cleaned.out == ("map:a - executing 'Python: function report_to_history'\n"
                           f"  map:a: report moved to {HISTORY}/a/1.md\n")
    assert (done.root / HISTORY / "a/1.md").read_bytes() == report
    assert json.loads((done.root / HISTORY / "a/1.provenance.json").read_text()) == entry
    assert "a" not in done.provenance()["tasks"]
    status = done.rlm_cli("status")
    task_lines = [line for line in status.lines if line.startswith(("run ", "fresh ", "stale ", "missing "))]
    assert task_lines == [  # b and v read a's report: it is gone
        "run t: 3 tasks: 0 fresh, 2 stale, 1 missing, 0 invalid",
        f"missing  map:a                          {REPORTS}/a.md",
        f"stale    map:b                          input_changed,upstream_stale "
        f"(changed: {REPORTS}/a.md; upstream: map:a)  {REPORTS}/b.md",
        f"stale    verify:v                       input_changed,upstream_stale "
        f"(changed: {REPORTS}/a.md; upstream: map:a)  {REPORTS}/v.md"], status.out
    assert done.rlm_cli("check").code == 1
    assert done.doit_cli().code == 0 and ran_now(done)[0] == "a"

    everything = done.doit_cli("clean")
    assert everything.code == 0
    assert done.rlm_cli("status").lines[0] == "run t: 3 tasks: 0 fresh, 0 stale, 3 missing, 0 invalid"
    assert sorted(p.name for p in (done.root / HISTORY).iterdir()) == ["a", "b", "v"]


@pytest.mark.slow
def test_doit_final_says_what_rlm_final_says(done: Repo) -> None:
    refused = done.doit_cli("final")
    assert refused.code == 1
    assert ("  FAILED  final: final refused: no decision: write `decision: {should_finish, reason, conclusions}` "
            "in rlm.yaml") in refused.lines
    config = done.root / "rlm.yaml"
    config.write_text(config.read_text() + "decision: {should_finish: true, reason: verified, conclusions: []}\n")
    written = done.doit_cli("final")
    line = f"final: finish (verified): {RUN_DIR}/final.json, {RUN_DIR}/final.md"
    assert written.code == 0 and line in written.lines, written.out
    assert done.rlm_cli("final").out == line + "\n"


@pytest.mark.slow
def test_rlm_run_takes_bare_ids_and_rejects_unknown_tasks(done: Repo) -> None:
    config = done.root / "rlm.yaml"
    config.write_text(config.read_text().replace("goal: B", "goal: B2"))
    bare = done.rlm_cli("run", "b")
    assert bare.code == 0 and ran_now(done) == ["b"], bare.out + bare.err
    for name, hint in (("parser", ""), ("map:c", " (did you mean 'map:b'?)"), ("vv", " (did you mean 'v'?)")):
        unknown = done.rlm_cli("run", name)
        assert (unknown.code, unknown.out, unknown.err) == (
            2, "", f"rlm run: unknown task '{name}'{hint}; `rlm status` lists the tasks\n")
    forced = done.rlm_cli("run", "--force")
    assert (forced.code, forced.err) == (2, "rlm run --force: name the tasks to run again, e.g. `rlm run --force a`\n")


@pytest.mark.slow
def test_doit_clean_dry_run_and_never_during_a_run(done: Repo) -> None:
    dry = done.doit_cli("clean", "-n", "map:a")
    assert dry.out == ("map:a - executing 'Python: function report_to_history'\n"
                       f"  map:a: would move {REPORTS}/a.md to history\n")
    assert (done.root / REPORTS / "a.md").exists()

    from rlm_tasks.config.plan import load_plan
    from rlm_tasks.lifecycle.runlock import RunLock
    from rlm_tasks.state.context import RunContext

    lock = RunLock(RunContext(load_plan(done.root / "rlm.yaml")).layout)
    lock.acquire()  # as a run in progress holds it
    try:
        locked = done.doit_cli("clean", "map:a")
    finally:
        lock.release()
    assert locked.code == 3
    assert re.fullmatch(r"rlm: run 't' is locked by another process \(pid \d+ on host .*, started .*\); "
                        r"lock: \.rlm/local/locks/t\.lock\n", locked.err), locked.err
    assert (done.root / REPORTS / "a.md").exists() and "a" in done.provenance()["tasks"]


@pytest.mark.slow
def test_doit_list_shows_escape_sequences_in_a_goal_escaped(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "\x1b]0;pwned\x07\x1b[31mred\rhidden"}])
    listed = repo.doit_cli("list")
    assert listed.code == 0
    assert "map:a      \\x1b]0;pwned\\x07\\x1b[31mred" in listed.lines, listed.out  # never sent to the terminal raw


@pytest.mark.parametrize("count", ["-1", "257", "99999999999999999999"])
def test_doit_refuses_a_negative_or_huge_process_count(repo: Repo, count: str) -> None:
    repo.write_command([{"id": "only", "goal": "write a report"}])
    refused = repo.doit("-n", count)
    assert refused.code == 2
    assert refused.err == (f"doit: -n/--process must be between 0 and 256 (the cap of budget.max_inflight), "
                           f"got {count}; nothing ran\n")
    assert not repo.report("only").exists()
    assert not RunLayout(repo.root, "t").lock_holder_json.exists()


def test_doit_process_count_zero_runs_without_parallel_workers(repo: Repo) -> None:
    repo.write_command([{"id": "only", "goal": "write a report"}])
    assert repo.doit("-n", "0").code == 0
    assert repo.report("only").exists()


@pytest.mark.parametrize(("command", "extras"), [("run", []), ("list", []), ("clean", ["clean"]), ("info", ["meta"]),
                                                 (None, ["clean", "meta"])])
def test_a_task_carries_clean_actions_and_meta_only_for_the_command_that_reads_them(
        repo: Repo, command: str | None, extras: list[str]) -> None:
    repo.write_command([{"id": "a", "goal": "Task a."}], verify=[{"id": "v", "goal": "Check a."}])
    repo.monkeypatch.chdir(repo.root)
    generators = task_generators(Run(load_context("rlm.yaml")), command)

    for section in ("task_map", "task_verify"):
        worker_tasks = [task for task in generators[section]() if task.get("name")]
        assert [sorted({"clean", "meta"} & set(task)) for task in worker_tasks] == [extras]
