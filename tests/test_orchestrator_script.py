"""An orchestrator that follows only the shipped reduce-orchestrator skill's command sequence, on command workers.

plan, wave, review, join wave, verify, decide iterate, second iteration (killed mid-wave, then rehydrated and
adopted), finish, final, archive. Each step decides from what the previous command printed: counts and paths,
never a report's or a log's contents (every report carries a marker that no output may show).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import yaml
from conftest import Background, Repo, Result, subprocess_env, wait_for

from rlm_tasks.config import schema

MARKER = "REPORT-BODY-7f3a"  # in every report; never in any command's output
REPORT = ("# {worker_id}\n\n## What I did\n" + MARKER + "\n\n## Key findings\n- x\n\n## Evidence\n- y\n\n"
          "## Open questions / risks\n- none\n\n## Deferred opportunities\n"
          "- Proposal: cache it. Why deferred: out of scope. How to validate: time it.\n\n"
          "## Contract Compliance\n- Contract read: yes.\n")
SUMMARY = re.compile(r"rlm: (?P<ran>\d+) ran, (?P<failed>\d+) failed, (?P<fresh>\d+) fresh"
                     r"(?:, (?P<waiting>\d+) wait for the next wave \(rlm status\))?"
                     r"(?:, (?P<joins>\d+) join tasks? ready for `rlm run --wave --allow-join`)?"
                     r" in [\d.]+s; inventory: (?P<inventory>\S+)")


@dataclass
class Summary:
    ran: int
    failed: int
    fresh: int
    waiting: int
    joins: int
    inventory: str


class Orchestrator:
    """Runs `rlm` as the skill says and keeps only what the commands printed."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.outputs: list[str] = []

    def rlm(self, *args: str, code: int = 0) -> Result:
        result = self.repo.rlm_cli(*args)
        self.outputs.append(result.out + result.err)
        assert result.code == code, (args, result.out, result.err)
        assert MARKER not in result.out + result.err  # paths and counts, never contents
        return result

    def wave(self, *flags: str) -> Summary:
        result = self.rlm("run", "--wave", *flags)
        return summary(result.lines[-1])

    def status(self) -> tuple[dict[str, int], str | None]:
        """(tasks per state, the next-wave line) from `rlm status`'s first and last lines."""
        lines = self.rlm("status").lines
        counts = {state: int(n) for n, state in re.findall(r"(\d+) ([a-z]+)", lines[0].split(": ", 2)[2])}
        return counts, next((line for line in lines if line.startswith("next wave: ")), None)

    def edit(self, change: Any) -> None:
        data = yaml.safe_load(self.repo.path("rlm.yaml").read_text())
        change(data)
        self.repo.write(data)

    def json_file(self, rel: str) -> Any:
        """A small state file the skill says to read (never a report)."""
        assert rel.endswith(".json"), rel
        return json.loads(self.repo.path(rel).read_text())


def summary(line: str) -> Summary:
    match = SUMMARY.fullmatch(line)
    assert match, line
    return Summary(*(int(match[k] or 0) for k in ("ran", "failed", "fresh", "waiting", "joins")),
                   match["inventory"])


def start_wave(repo: Repo, *flags: str) -> Background:
    # RLM_KEEP_WORKERS: the worker outlives the orchestrator's SIGKILL, for the adoption the skill describes
    proc = subprocess.Popen([sys.executable, "-m", "rlm_tasks", "run", "--wave", *flags], cwd=repo.root,
                            env=subprocess_env(PYTHONUNBUFFERED="1", RLM_KEEP_WORKERS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    started = Background(proc)
    repo.started.append(started)
    return started


def test_an_orchestrator_following_the_skill_finishes_a_run_from_what_commands_print(repo: Repo) -> None:
    go = repo.root / "go"
    o = Orchestrator(repo)
    # PLAN: three small tasks and a join; the contract carries the environment baseline
    repo.write_command([{"id": "lexer", "goal": "L"}, {"id": "parser", "goal": "P"}, {"id": "docs", "goal": "D"},
                        {"id": "join-summary", "goal": "J", "depends_on": ["lexer", "parser", "docs"]}],
                       {"*": {"text": REPORT}, "cache": {"text": REPORT, "wait_for": str(go)}},
                       budget={"max_inflight": 2, "max_iterations": 3},
                       success_criteria=["every module described"],
                       contract={"invariants": ["read-only"], "verification": {"commands": ["true"]}})
    assert re.fullmatch(r"rlm\.yaml: valid: run t, 4 map tasks, 0 verify tasks\n", o.rlm("validate").out)

    # MAP, wave 1: two slots, no refill
    first = o.wave()
    assert (first.ran, first.failed, first.waiting) == (2, 0, 2)
    counts, next_wave = o.status()
    assert counts["fresh"] == 2 and next_wave is not None and next_wave.startswith("next wave: 1 task (map:docs)")
    # REVIEW: the inventory the run named
    state = o.json_file(first.inventory)
    assert schema.check("reduce_state", state) == [] and state["counts"]["fresh"] == 2
    second = o.wave()
    assert (second.ran, second.failed) == (1, 0)  # docs; the join was not ready before it ran
    counts, next_wave = o.status()
    assert next_wave is not None and "only join tasks are ready" in next_wave and "--allow-join" in next_wave
    held = o.wave()  # a plain wave still holds it, and says how to run it
    assert (held.ran, held.joins) == (0, 1)
    joined = o.wave("--allow-join")
    assert (joined.ran, joined.failed, joined.waiting) == (1, 0, 0)
    assert o.status()[1] is None  # nothing left to run

    # VERIFY: top-K claims
    o.edit(lambda d: d.update(verify=[{"id": "check", "goal": "re-check the join's claims"}]))
    verified = o.wave()
    assert (verified.ran, verified.failed) == (1, 0)

    # DECIDE: iterate
    o.edit(lambda d: d.update(decision={"should_finish": False, "reason": "one module is missing"}))
    final_line = o.rlm("final").lines[-1]
    assert final_line.startswith("final: iterate (one module is missing): ")
    final_json = final_line.rsplit(": ", 1)[1].split(", ")[0]
    assert o.json_file(final_json)["termination_decision"]["should_finish"] is False

    # second iteration: a new task; its wave is killed mid-run (the orchestrator dies, the worker lives)
    o.edit(lambda d: (d["tasks"].append({"id": "cache", "goal": "C"}), d.pop("decision")))
    killed = start_wave(repo)
    wait_for(lambda: len(repo.inflight_entries()) == 1, "the cache worker running")
    killed.proc.kill()
    killed.finish()

    # REHYDRATE from disk: status, then reduce; both say what to do next in counts and paths
    counts, next_wave = o.status()
    assert next_wave is not None and next_wave.startswith("next wave: 1 task (map:cache)")
    reduced = o.rlm("reduce").lines[-1]
    inventory = reduced.rsplit(": ", 1)[1]
    assert inventory == first.inventory
    assert o.json_file(inventory)["iteration"] == 2
    assert o.json_file(".rlm/runs/t/plan.json")["changed_since_last_iteration"]["added"] == ["cache"]
    go.touch()  # the orphan may finish; the next wave adopts it instead of ending it
    adopted = o.wave("--adopt")
    assert (adopted.ran, adopted.failed) == (1, 0)
    assert [(r["worker_id"], r["attempt"]) for r in repo.records("cache")] == [("cache", 1)]
    assert o.status()[1] is not None  # verify reads the new report: stale, the next wave reruns it
    rechecked = o.wave()
    assert (rechecked.ran, rechecked.failed) == (1, 0)

    # DECIDE: finish, with the deferred opportunities and the rehydration for the final message
    deferred = o.json_file(".rlm/runs/t/deferred.json")
    assert deferred["count"] == 6  # one per report: listed in the final message, or "none identified"
    o.edit(lambda d: d.update(decision={
        "should_finish": True, "reason": "every module described and verified",
        "conclusions": [{"text": "done", "evidence": [".rlm/runs/t/artifacts/reports/check.md"]}],
        "deviations": []}))
    final_line = o.rlm("final").lines[-1]
    assert final_line.startswith("final: finish (every module described and verified): ")
    final = o.json_file(final_line.rsplit(": ", 1)[1].split(", ")[0])
    assert final["termination_decision"]["terminal"] is True and final["iteration"] == 2
    assert final["deviations"] == []
    assert o.rlm("check").code == 0

    # ARCHIVE, and the run is finished
    archived = o.rlm("archive").out
    assert re.search(r"\.rlm/archive/t-\d{8}T\d{6}Z", archived), archived
    refused = o.rlm("run", "--wave", code=1)
    assert "is finished" in refused.err and "`rlm run --reopen`" in refused.err
    # nothing any command printed was a report's or a log's contents
    assert all(MARKER not in out for out in o.outputs)
