"""Tokens and cost end to end on the fake codex (its `--json` turn) and command workers ($RLM_USAGE_PATH).

The real codex and claude CLIs against the scripted servers are in tests/e2e/test_usage_e2e.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import LOCAL_RUN, RUN_DIR, Repo

from rlm_tasks.agents.base import MAX_COST_USD, MAX_TOKENS
from rlm_tasks.config import schema

LOGS = f"{LOCAL_RUN}/logs"
USAGE = {"input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 100, "reasoning_output_tokens": 10}
# the default price of gpt-5.1-codex-mini: $0.25 / $0.025 / $2 per million input / cached input / output tokens
ONE_ATTEMPT = (800 * 0.25 + 200 * 0.025 + 100 * 2.0) / 1_000_000


def load(repo: Repo, rel: str) -> Any:
    return json.loads(repo.path(rel).read_text(encoding="utf-8"))


def record(cost: float | None, source: str, model: str = "gpt-5.1-codex-mini") -> dict[str, Any]:
    return {"input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 100, "reasoning_tokens": 10,
            "total_tokens": 1100, "cost_usd": cost, "cost_source": source, "model": model}


def test_codex_usage_is_recorded_per_attempt_and_summed(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "compute_tier": "heavy"}])
    assert repo.doit().code == 0
    provenance = repo.provenance()
    assert schema.check("provenance", provenance) == []
    assert provenance["tasks"]["a"]["attempts"][0]["usage"] == record(round(ONE_ATTEMPT, 6), "prices")
    heavy = (800 * 1.75 + 200 * 0.175 + 100 * 14.0) / 1_000_000  # gpt-5.2-codex
    assert provenance["tasks"]["b"]["attempts"][0]["usage"] == record(round(heavy, 6), "prices", "gpt-5.2-codex")
    usage_file = load(repo, f"{LOGS}/a.attempt-1.usage.json")
    assert schema.check("usage", usage_file) == []
    assert usage_file == {"worker_id": "a", "attempt": 1, "compute_tier": "standard",
                          **record(round(ONE_ATTEMPT, 6), "prices")}
    # the raw events are next to the log; the log has the readable line
    events = repo.path(f"{LOGS}/a.attempt-1.events.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(events[-1]) == {"type": "turn.completed", "usage": USAGE}
    status = json.loads(repo.rlm("status", "--json").out)
    assert schema.check("status", status) == []
    total = status["usage"]["total"]
    assert (total["input_tokens"], total["cached_input_tokens"], total["output_tokens"], total["total_tokens"],
            total["attempts"], total["unpriced_attempts"]) == (2000, 400, 200, 2200, 2, 0)
    assert total["cost_usd"] == round(round(ONE_ATTEMPT, 6) + round(heavy, 6), 6)
    assert list(status["usage"]["by_tier"]) == ["heavy", "standard"]
    assert [t["worker_id"] for t in status["usage"]["top_tasks"]] == ["b", "a"]
    assert repo.rlm("status").lines[1] == (
        f"usage: 2200 tokens (input 2000, cached 400, output 200), ${total['cost_usd']:.4f}")
    reduce_state = load(repo, f"{RUN_DIR}/reduce_state.json")
    assert schema.check("reduce_state", reduce_state) == []
    assert reduce_state["usage"]["total"] == total
    assert reduce_state["tasks"][0]["usage"] == status["usage"]["tasks"]["a"]
    assert reduce_state["budget"]["tokens_used"] == 2200


def test_an_unknown_model_counts_tokens_only_and_prices_override(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "compute_tier": "mine"}],
                     tiers={"mine": {"model": "my-model"}, "standard": {"model": "priced"}},
                     prices={"priced": {"input": 10, "output": 20}})
    assert repo.doit().code == 0
    provenance = repo.provenance()
    assert provenance["tasks"]["a"]["attempts"][0]["usage"] == record(0.012, "prices", "priced")  # cached = input
    assert provenance["tasks"]["b"]["attempts"][0]["usage"] == record(None, "unknown", "my-model")
    lines = repo.rlm("status").lines
    assert lines[1] == "usage: 2200 tokens (input 2000, cached 400, output 200), $0.0120 + 1 attempt of unknown price"


@pytest.mark.slow
def test_a_fresh_clone_knows_what_the_committed_reports_cost(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}])
    assert repo.doit().code == 0
    before = json.loads(repo.rlm("status", "--json").out)["usage"]
    shutil.rmtree(repo.path(".rlm/local"))  # what a clone has: the committed run directory only
    after = json.loads(repo.rlm("status", "--json").out)["usage"]
    assert after == before
    assert after["total"]["total_tokens"] == 2200


@pytest.mark.slow
def test_failed_attempts_count_too(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A", "retries": 1, "backoff_seconds": 0}], mode="no-report")
    assert repo.doit().code == 1
    status = json.loads(repo.rlm("status", "--json").out)
    assert status["usage"]["tasks"]["a"]["attempts"] == 2
    assert status["usage"]["total"]["total_tokens"] == 2200


def test_failed_attempts_count_the_same_in_a_fresh_clone_and_for_the_budget(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A", "retries": 1, "backoff_seconds": 0}, {"id": "b", "goal": "B"}],
                     mode="a=no-report", budget={"max_workers": 3})
    assert repo.doit().code == 1
    before = json.loads(repo.rlm("status", "--json").out)
    inventory = repo.rlm("reduce")
    assert inventory.code == 0, inventory.err
    budget = load(repo, f"{RUN_DIR}/reduce_state.json")["budget"]
    shutil.rmtree(repo.path(".rlm/local"))  # a clone has the committed run directory only: no logs, no usage files
    after = json.loads(repo.rlm("status", "--json").out)
    assert after["usage"] == before["usage"]
    assert after["usage"]["total"]["total_tokens"] == 3300 and after["usage"]["total"]["attempts"] == 3
    assert [(t["id"], t["attempts"]) for t in after["tasks"]] == [("a", 2), ("b", 1)]
    assert repo.rlm("reduce").code == 0
    assert load(repo, f"{RUN_DIR}/reduce_state.json")["budget"] == budget
    assert (budget["attempts_used"], budget["tokens_used"]) == (3, 3300)
    # the clone's budget knows the three attempts: no further one starts
    result = repo.doit()
    assert "budget exhausted: max_workers (3 worker attempts started, limit 3); map:a not started" in result.out


@pytest.mark.slow
def test_max_tokens_stops_new_attempts(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"]},
                      {"id": "c", "goal": "C", "depends_on": ["b"]}],
                     budget={"max_inflight": 1, "max_tokens": 2000})
    result = repo.doit()
    assert result.code == 1
    assert repo.ran() == ["a", "b"]  # 1100 tokens after a, 2200 after b: c may not start
    assert ("  STOPPED map:c: budget exhausted: max_tokens (2200 tokens used, limit 2000); map:c not started "
            "(raise the budget in rlm.yaml to go on)\n") in result.out
    reduce_state = load(repo, f"{RUN_DIR}/reduce_state.json")
    assert reduce_state["budget"]["exhausted"] == "max_tokens (2200 tokens used, limit 2000)"


def test_max_cost_usd_stops_new_attempts(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"]}],
                     budget={"max_inflight": 1, "max_cost_usd": 0.0001})
    result = repo.doit()
    assert result.code == 1
    assert repo.ran() == ["a"]
    assert "budget exhausted: max_cost_usd ($0.0004 spent, limit $0.0001); map:b not started" in result.out


@pytest.mark.slow
def test_a_spending_cap_is_the_terminal_state_of_the_other_budgets(repo: Repo) -> None:
    spend = {"usage": {"input_tokens": 600, "output_tokens": 100, "cost_usd": 0.01, "model": "local"}}
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"]}],
                       {"*": spend}, budget={"max_inflight": 1, "max_tokens": 1000},
                       verify=[{"id": "v", "goal": "V", "depends_on": ["a"]}],
                       decision={"should_finish": False, "reason": "wanted more"})
    result = repo.doit("map:a", "map:b", "verify:v")
    assert result.code == 1
    assert repo.ran() == ["a", "b"]  # 700 tokens after a, 1400 after b: the verify worker may not start
    out = result.out
    assert "FAILED" not in out
    assert ("  STOPPED verify:v: budget exhausted: max_tokens (1400 tokens used, limit 1000); verify:v not started "
            "(raise the budget in rlm.yaml to go on)\n") in out
    assert out.splitlines()[-1].startswith(
        "rlm: budget exhausted: max_tokens (1400 tokens used, limit 1000): the run ends here (`rlm final` records "
        "it next to the decision); 2 ran, 0 failed, 1 stopped by the budget, 0 fresh in ")
    final_run = repo.rlm("final")
    assert (final_run.code, final_run.out) == (0, (
        "final: iterate, but budget exhausted: max_tokens (1400 tokens used, limit 1000): the run ends here with "
        f"1 task(s) not done (wanted more): {RUN_DIR}/final.json, {RUN_DIR}/final.md\n"))
    final = load(repo, f"{RUN_DIR}/final.json")
    assert schema.check("final", final) == []
    decision = final["termination_decision"]
    assert (decision["should_finish"], decision["reason"], decision["terminal"]) == (False, "wanted more", True)
    assert decision["budget_exhausted"] == "budget exhausted: max_tokens (1400 tokens used, limit 1000)"
    assert final["unfinished_tasks"] == [{"id": "v", "doit_name": "verify:v", "state": "missing",
                                          "report_path": f"{RUN_DIR}/artifacts/reports/v.md"}]
    text = repo.path(f"{RUN_DIR}/final.md").read_text(encoding="utf-8")
    assert f"- `verify:v` (missing): `{RUN_DIR}/artifacts/reports/v.md`" in text
    assert repo.rlm("archive").code == 0


def command_run(repo: Repo, usage_text: str | None) -> dict[str, Any]:
    """One command worker that writes `usage_text` (None: nothing) to its usage file."""
    repo.write_command([{"id": "a", "goal": "A"}], {} if usage_text is None else {"a": {"usage": usage_text}})
    assert repo.doit().code == 0
    return repo.provenance()["tasks"]["a"]["attempts"][0]  # type: ignore[no-any-return]


def test_a_command_worker_reports_usage_through_its_usage_file(repo: Repo) -> None:
    attempt = command_run(repo, json.dumps({"input_tokens": 50, "output_tokens": 7, "cost_usd": 0.5,
                                            "model": "local"}))
    assert attempt["usage"] == {"input_tokens": 50, "cached_input_tokens": 0, "output_tokens": 7,
                                "reasoning_tokens": 0, "total_tokens": 57, "cost_usd": 0.5, "cost_source": "agent",
                                "model": "local"}


def test_a_command_worker_without_a_usage_file_has_no_usage(repo: Repo) -> None:
    attempt = command_run(repo, None)
    assert "usage" not in attempt
    assert repo.rlm("status").lines[1:] == [f"fresh    map:a                          {RUN_DIR}/artifacts/reports/a.md"]


def test_a_bad_usage_file_is_ignored_and_said_in_the_log(repo: Repo) -> None:
    attempt = command_run(repo, '{"input_tokens": -1}')
    assert "usage" not in attempt
    assert repo.path(f"{LOGS}/a.attempt-1.log").read_text(encoding="utf-8") == (
        "fake agent: a attempt 1 in mode spec\n"
        "rlm: usage file ignored: a.attempt-1.worker-usage.json: input_tokens: must be >= 0; got -1\n")



@pytest.mark.parametrize(("usage_text", "why"), [
    ('{"input_tokens": 1%s}' % ("0" * 320), f"input_tokens: must be <= 1000000000000; got 1{'0' * 320}"),
    ('{"cost_usd": 1e308}', "cost_usd: must be <= 1000000; got 1e+308"),  # two of them summed were inf: a crash
    ('{"input_tokens": 10, "cached_input_tokens": 11}', "cached_input_tokens is above input_tokens"),
    ('{"output_tokens": 5, "reasoning_tokens": 6}', "reasoning_tokens is above output_tokens"),
    ('{"input_tokens": true}', "input_tokens: expected an integer, got a boolean"),
])
@pytest.mark.slow
def test_absurd_usage_figures_are_ignored(repo: Repo, usage_text: str, why: str) -> None:
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}], {"*": {"usage": usage_text}})
    result = repo.doit()
    assert result.code == 0, result.out
    assert "usage" not in repo.provenance()["tasks"]["a"]["attempts"][0]
    assert repo.path(f"{LOGS}/a.attempt-1.log").read_text(encoding="utf-8") == (
        f"fake agent: a attempt 1 in mode spec\nrlm: usage file ignored: a.attempt-1.worker-usage.json: {why}\n")
    assert schema.check("usage_file", {"input_tokens": MAX_TOKENS, "cost_usd": MAX_COST_USD}) == []


@pytest.mark.parametrize(("make", "why"), [
    ("os.mkfifo(u)", "a.attempt-1.worker-usage.json is not a regular file"),  # reading it blocked the run
    ("os.symlink('/dev/zero', u)", "cannot read a.attempt-1.worker-usage.json: it is a symlink"),  # endless
])
@pytest.mark.slow
def test_a_usage_file_that_is_no_file_is_never_read(repo: Repo, make: str, why: str) -> None:
    code = ("import os\nu = os.environ['RLM_USAGE_PATH']\n" + make + "\n"
            "open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\nkept\\n')\n")
    repo.write({"version": 1, "run_id": "t", "goal": "g",
                "agent": {"kind": "command", "timeout": 30, "command": ["{{ python }}", "-c", code]},
                "tasks": [{"id": "a", "goal": "A"}]})
    assert repo.doit().code == 0
    assert repo.path(f"{LOGS}/a.attempt-1.log").read_text(encoding="utf-8") == f"rlm: usage file ignored: {why}\n"

def test_final_shows_cost_per_tier_and_task(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A"}], verify=[{"id": "v", "goal": "V", "depends_on": ["a"]}],
                     decision={"should_finish": True, "reason": "done"})
    assert repo.doit().code == 0
    assert repo.rlm("final").code == 0
    final = load(repo, f"{RUN_DIR}/final.json")
    assert schema.check("final", final) == []
    assert final["usage"]["total"]["total_tokens"] == 2200
    assert [t["worker_id"] for t in final["usage"]["top_tasks"]] == ["a", "v"]
    assert final["termination_decision"]["budget_used"]["tokens"] == 2200
    text = repo.path(f"{RUN_DIR}/final.md").read_text(encoding="utf-8")
    cost = ONE_ATTEMPT * 2
    assert (f"2200 tokens (input 2000, cached 400, output 200, reasoning 20), ${cost:.4f} over 2 attempt(s)."
            in text)
    assert f"| standard | 2 | 2200 | {cost:.4f} |" in text
    assert f"| [a](artifacts/reports/a.md) | 1 | 1100 | {ONE_ATTEMPT:.4f} |" in text


def test_prices_must_be_finite(repo: Repo) -> None:
    repo.write("""\
version: 1
run_id: t
goal: g
tasks: [{id: a, goal: g}]
budget: {max_cost_usd: .inf}
prices:
  m: {input: .nan, output: 1}
""")
    result = repo.rlm("validate")
    assert (result.code, result.err.splitlines()) == (2, [
        "rlm.yaml:5:24: budget.max_cost_usd: inf is not allowed: numbers must be finite",
        "rlm.yaml:7:14: prices.m.input: nan is not allowed: numbers must be finite",
    ])



def test_prices_have_a_ceiling(repo: Repo) -> None:
    # 10^12 tokens at 10^300 a million overflowed the cost to inf: the attempt failed with "PythonAction Error"
    repo.write("version: 1\nrun_id: t\ngoal: g\ntasks: [{id: a, goal: g}]\n"
               "prices: {m: {input: 1.0e+300, cached_input: 1000001, output: 1000000}}\n")
    result = repo.rlm("validate")
    assert (result.code, result.err.splitlines()) == (2, [
        "rlm.yaml:5:21: prices.m.input: must be <= 1000000; got 1e+300",
        "rlm.yaml:5:45: prices.m.cached_input: must be <= 1000000; got 1000001",
    ])

def test_event_streams_cut_short(tmp_path: Path) -> None:
    """A killed agent leaves a half line, or no closing event: what it said before still counts, once."""
    from rlm_tasks.agents.base import Usage
    from rlm_tasks.run.usage import from_events

    codex = tmp_path / "codex.jsonl"
    codex.write_text('{"type":"turn.started"}\n{"type":"turn.completed","usage":{"input_tokens":5,"output_tok',
                     encoding="utf-8")
    assert from_events("codex", codex) is None
    message = {"id": "m1", "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 3}}
    claude = tmp_path / "claude.jsonl"
    claude.write_text("\n".join(json.dumps(e) for e in [
        {"type": "assistant", "message": {**message, "content": [{"type": "text", "text": "a"}]}},
        {"type": "assistant", "message": {**message, "content": [{"type": "tool_use", "name": "Write"}]}},
        {"type": "assistant", "message": {"id": "m2", "usage": {"input_tokens": 1, "output_tokens": 1}}},
    ]) + "\n{\"type\":\"res", encoding="utf-8")
    assert from_events("claude", claude) == Usage(input_tokens=15, cached_input_tokens=4, output_tokens=4)
    assert from_events("claude", tmp_path / "missing.jsonl") is None


def test_the_human_log_line_of_each_event() -> None:
    from rlm_tasks.run.usage import human_line

    assert human_line("codex", b'{"type":"item.completed","item":{"type":"command_execution","command":"ls",'
                               b'"exit_code":0}}\n') == b"[exec] ls (exit 0)\n"
    assert human_line("codex", b'{"type":"item.started"}\n') is None
    assert human_line("codex", b"not json\n") == b"not json\n"
    assert human_line("claude", b'{"type":"result","subtype":"success","num_turns":2,"total_cost_usd":0.5,'
                                b'"result":"done"}') == b"[result] success, 2 turns, cost $0.5: done\n"
    long = json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "x" * 1000}})
    assert human_line("codex", long.encode()) == b"[agent] " + b"x" * 297 + b"...\n"


@pytest.mark.hand_made_state  # a forged usage file, on purpose
@pytest.mark.parametrize("record", [
    {"input_tokens": 5, "cached_input_tokens": 6}, {"input_tokens": -1}, {"output_tokens": 1.5},
    {"input_tokens": True}, {"cost_usd": float("nan")}, {"cost_usd": -1}, {"cost_usd": "1"}, [1],
])
def test_a_usage_record_left_in_the_logs_folder_never_reaches_the_bill(repo: Repo, record: Any) -> None:
    """The logs folder is worker-writable: a forged usage record is left out of every total."""
    repo.write_command([{"id": "a", "goal": "A"}], {"*": {"usage": '{"input_tokens": 10, "output_tokens": 2}'}})
    assert repo.doit().code == 0
    forged = repo.path(f"{LOGS}/b.attempt-1.usage.json")
    forged.write_text(json.dumps({"worker_id": "b", "attempt": 1, "compute_tier": "standard", **record})
                      if isinstance(record, dict) else json.dumps(record), encoding="utf-8")
    status = json.loads(repo.rlm("status", "--json").out)
    assert status["usage"]["total"]["input_tokens"] == 10, status["usage"]
