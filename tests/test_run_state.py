"""One Run object per run: its state (budget claims, inflight session, executor, the collector switch) lives on
it and nowhere else, and nothing of a run stays in the process after it returns, returns early or fails."""

from __future__ import annotations

import ast
import gc
from pathlib import Path
from typing import Any

import pytest
from conftest import Repo

import rlm_tasks
from rlm_tasks.run import executors
from rlm_tasks.run.executors.base import LocalExecutor
from rlm_tasks.run.runstate import CollectorSwitch, Run
from rlm_tasks.state.budget import BudgetExhausted
from rlm_tasks.state.context import load_context
from rlm_tasks.tasks import load_run

PACKAGE = Path(rlm_tasks.__file__).parent
# Module-level mutable state that is the process's, not a run's: the worker groups alive in this process and
# the shutdown a signal asked for (the signal handler must reach them), and the subreaper's bookkeeping.
PROCESS_STATE = {
    "run/worker.py": {"_live_groups", "_shutdown"},
    "run/orphans.py": {"_spawned", "_spawning", "_known"},
    # Not the process's: the doit commands that loaded rlm's tasks, kept for lock_state_change. It belongs on the
    # Run (and grows by one per load); listed here so this test guards everything else until it moves.
    "run/doit_commands.py": {"_loading"},
}
MUTABLE = ("dict", "set", "list", "WeakKeyDictionary", "WeakValueDictionary", "WeakSet", "defaultdict", "Event")


def module_state(path: Path) -> set[str]:
    """Names a module binds at its top level to an empty or growing container: a registry in waiting."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if not isinstance(target, ast.Name) or value is None or target.id.isupper():
            continue  # UPPER_CASE names are constant tables
        call = value.func if isinstance(value, ast.Call) else None
        name = call.attr if isinstance(call, ast.Attribute) else call.id if isinstance(call, ast.Name) else None
        if isinstance(value, (ast.Dict, ast.Set, ast.List)) or name in MUTABLE:
            found.add(target.id)
    return found


def test_no_module_keeps_a_registry_of_runs() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        names = module_state(path) - PROCESS_STATE.get(rel, set())
        if names:
            found[rel] = sorted(names)
    assert found == {}


def test_a_registry_is_found(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import weakref\nTABLE = {}\n_sessions: dict[int, int] = {}\n"
                      "_executors = weakref.WeakKeyDictionary()\n_lock = object()\n")
    assert module_state(module) == {"_sessions", "_executors"}


def budget_plan(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], budget={"max_workers": 1})
    repo.monkeypatch.chdir(repo.root)


def test_each_run_claims_the_budget_afresh_even_on_the_same_context(repo: Repo) -> None:
    budget_plan(repo)
    ctx = load_context("rlm.yaml")
    first = Run(ctx)
    first.budget.claim(ctx, "map:a")
    with pytest.raises(BudgetExhausted, match=r"max_workers \(1 worker attempts started, limit 1\)"):
        first.budget.claim(ctx, "map:b")
    first.close()
    # the same context object (so the same id) in a new run: its claims start from the records, which hold none
    second = Run(ctx)
    second.budget.claim(ctx, "map:a")
    second.close()


def test_usage_added_before_the_first_claim_is_counted_once(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}], budget={"max_tokens": 100})
    repo.monkeypatch.chdir(repo.root)
    ctx = load_context("rlm.yaml")
    run = Run(ctx)
    run.budget.add_usage({"total_tokens": 500, "cost_usd": 0.0})  # e.g. an adopted attempt, already in the files
    run.budget.claim(ctx, "map:a")  # the records (which hold no usage here) are the base: 0 of 100
    run.budget.add_usage({"total_tokens": 100, "cost_usd": 0.0})
    with pytest.raises(BudgetExhausted, match=r"max_tokens \(100 tokens used, limit 100\)"):
        run.budget.claim(ctx, "map:a")


def test_two_runs_in_one_process_leave_nothing_behind(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[object] = []

    class Recording(LocalExecutor):
        def close(self) -> None:
            closed.append(self)

    monkeypatch.setattr(executors, "create", lambda ctx: Recording())
    repo.write_command([{"id": "a", "goal": "A"}])
    assert gc.isenabled()
    first = repo.doit()
    assert first.code == 0, first.out + first.err
    assert gc.isenabled()
    assert len(closed) == 1  # the run's executor, closed as the run ended

    listed = repo.doit("list")  # returns without a run session: the loader closes the run
    assert listed.code == 0
    assert gc.isenabled()

    repo.write("run_id: t\ngoal: G\ntasks: [{id: a}]\n")  # invalid: loading fails, exit 2
    failed = repo.doit()
    assert failed.code == 2
    assert gc.isenabled()

    repo.write_command([{"id": "a", "goal": "A2"}])
    second = repo.rlm("run")
    assert second.code == 0, second.out + second.err
    assert gc.isenabled()
    assert len(closed) == 2


def test_a_failed_load_turns_the_collector_back_on(repo: Repo) -> None:
    repo.write("run_id: t\ngoal: G\ntasks: []\n")
    repo.monkeypatch.chdir(repo.root)
    with pytest.raises(SystemExit) as exited:
        load_run("rlm.yaml")
    assert exited.value.code == 2
    assert gc.isenabled()


def test_a_load_that_raises_turns_the_collector_back_on(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    repo.monkeypatch.chdir(repo.root)

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug while loading")

    monkeypatch.setattr("rlm_tasks.tasks.load_context", broken)
    with pytest.raises(RuntimeError, match="a bug while loading"):
        load_run("rlm.yaml")
    assert gc.isenabled()


def test_a_loaded_run_is_closed_by_its_owner(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    repo.monkeypatch.chdir(repo.root)
    run = load_run("rlm.yaml")
    try:
        assert not gc.isenabled()  # loading keeps it off until the run starts
    finally:
        run.close()
    assert gc.isenabled()
    run.close()  # twice is harmless
    assert gc.isenabled()


def test_the_switch_leaves_a_collector_the_caller_turned_off_alone() -> None:
    gc.disable()
    try:
        switch = CollectorSwitch()
        switch.pause()
        switch.resume()
        assert not gc.isenabled()
    finally:
        gc.enable()
    switch = CollectorSwitch()
    switch.pause()
    assert not gc.isenabled()
    switch.resume(freeze=False)
    assert gc.isenabled()


def test_the_inflight_session_and_executor_belong_to_one_run(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    repo.monkeypatch.chdir(repo.root)
    ctx = load_context("rlm.yaml")
    one, two = Run(ctx), Run(ctx)
    assert one.inflight is one.inflight
    assert one.inflight is not two.inflight
    assert one.executor() is one.executor()
    assert one.executor() is not two.executor()
    executor = one.executor()
    one.close()
    assert one.executor() is not executor  # closed with the run; a later use makes a new one
    one.close()
    two.close()
