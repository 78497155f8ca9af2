"""The runner end to end with the real codex / claude executables against the scripted model servers.

Each test writes an rlm.yaml in a tmp repository whose agent is the pinned CLI (tests/e2e/agents.py),
pointed at a loopback server through ``agent.args`` / ``agent.env`` exactly as a user would point it at
another provider, and runs ``doit`` in-process (the ``repo`` fixture of tests/conftest.py). The
servers record every request, so the tests see what the runner made the CLI send: the tier's model
and effort, and the prompt rlm rendered, byte for byte. Skipped unless the pinned CLIs are installed
(tests/e2e/install_agents.sh).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agents
import messages_server
import pytest
import responses_server
from conftest import LOCAL_RUN, RUN_DIR
from messages_server import MessagesServer
from responses_server import ResponsesServer

RUN = RUN_DIR
LOCAL = LOCAL_RUN
TIMEOUT = 60  # agent.timeout: a hung CLI fails its task instead of the whole suite

CODEX_TIERS = {  # the defaults, spelled out so the assertions below read against them
    "standard": {"model": "gpt-5.1-codex-mini", "effort": "medium"},
    "heavy": {"model": "gpt-5.2-codex", "effort": "xhigh"},
}
# Both models send --effort as output_config.effort (claude-sonnet-4-5 would send none), and
# both support these values (xhigh would be clamped to high on opus-4-6).
CLAUDE_TIERS = {
    "standard": {"model": "claude-sonnet-4-6", "effort": "low"},
    "standard-plus": {"model": "claude-sonnet-4-6", "effort": "medium"},
    "heavy": {"model": "claude-opus-4-6", "effort": "high"},
}
# A goal the prompt must carry through argv building, stdin and the CLI untouched.
TRICKY_GOAL = "List the `rlm check` exit codes; keep $(echo expanded), $HOME, \"quotes\" and 'these' literal."

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("agent_environ")]


# ---- scripts and the rlm.yaml ----------------------------------------------------------------------------

class Timeline:
    """Wraps a server script and records when each worker's requests arrived (for the inflight bound)."""

    def __init__(self, script: Callable[[dict[str, Any]], Any]) -> None:
        self.script = script
        self.seen: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def __call__(self, record: dict[str, Any]) -> Any:
        with self._lock:
            self.seen[(record["envelope"] or {}).get("worker_id", "?")].append(time.monotonic())
        return self.script(record)

    def max_overlap(self) -> int:
        """Most workers whose first-to-last request spans overlap: a lower bound of the processes alive at once."""
        edges = sorted(e for times in self.seen.values() for e in ((min(times), 1), (max(times), -1)))
        alive = peak = 0
        for _, step in edges:
            alive += step
            peak = max(peak, alive)
        return peak


def silent_first_time(report: Callable[[dict[str, Any]], Any], silent: Callable[[dict[str, Any]], Any],
                      first_turn: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], Any]:
    """Per worker: the first attempt's model writes no report, every later attempt writes it.

    The prompt is the same on every attempt, so the script counts each worker's first turns.
    """
    starts: Counter[str] = Counter()
    lock = threading.Lock()

    def script(record: dict[str, Any]) -> Any:
        if first_turn(record):
            worker_id = (record["envelope"] or {}).get("worker_id", "?")
            with lock:
                starts[worker_id] += 1
                attempt = starts[worker_id]
            if attempt == 1:
                return silent(record)
        return report(record)

    return script


def codex_retry_script() -> Callable[[dict[str, Any]], Any]:
    flaky = silent_first_time(responses_server.report_script(), responses_server.no_report_script,
                              lambda record: not record["has_tool_output"])
    return responses_server.by_worker({"flaky": flaky, "stubborn": "no_report", "mute": "no_report"})


def claude_retry_script() -> Callable[[dict[str, Any]], Any]:
    flaky = silent_first_time(messages_server.report_script(), messages_server.no_report_script,
                              lambda record: not record["has_tool_result"])
    return messages_server.by_worker({"flaky": flaky, "mute": "no_report"})


def codex_agent(binary: str, base_url: str, home: Path) -> dict[str, Any]:
    home.mkdir(parents=True, exist_ok=True)  # codex refuses a CODEX_HOME that does not exist
    return {"kind": "codex", "binary": binary, "args": agents.codex_provider_args(base_url),
            "env": agents.codex_env(home), "timeout": TIMEOUT}


def claude_agent(binary: str, base_url: str, config_dir: Path) -> dict[str, Any]:
    config_dir.mkdir(parents=True, exist_ok=True)
    return {"kind": "claude", "binary": binary, "env": agents.claude_env(base_url, config_dir), "timeout": TIMEOUT}


def config(agent: dict[str, Any], tiers: dict[str, Any], tasks: list[dict[str, Any]],
           verify: list[dict[str, Any]] | None = None, max_inflight: int = 2) -> dict[str, Any]:
    data: dict[str, Any] = {"version": 1, "run_id": "t", "goal": "Drive the real agent CLI through the runner.",
                            "budget": {"max_inflight": max_inflight}, "agent": agent, "tiers": tiers,
                            "defaults": {"backoff_seconds": 0}, "tasks": tasks}
    if verify:
        data["verify"] = verify
    return data


def install_skills(repo: Any, codex_home: Path | None = None, claude_dir: Path | None = None) -> None:
    """`rlm skills install` into the tmp repo only (it always writes both the codex and the claude copy)."""
    result = repo.rlm("skills", "install", "--codex-home", str(codex_home or repo.root / "unused-codex-home"),
                      "--claude-dir", str(claude_dir or repo.root / "unused-claude-config"))
    assert result.code == 0, result.out + result.err


# ---- assertions ------------------------------------------------------------------------------------------

def prompt_file(repo: Any, worker_id: str) -> str:
    path: Path = repo.path(f"{RUN}/artifacts/prompts/{worker_id}.md")
    return path.read_text(encoding="utf-8")


def assert_prompts_arrived_intact(repo: Any, server: Any, worker_ids: list[str]) -> None:
    for worker_id in worker_ids:
        rendered = prompt_file(repo, worker_id)
        lines = rendered.splitlines()
        assert lines[:2] == ["Use the map-worker skill.", "$map-worker"], lines[:2]
        records = server.for_worker(worker_id)
        assert records, worker_id
        for record in records:
            # the user text the CLI sent is the file rlm rendered, byte for byte
            assert record["prompt"] == rendered, worker_id


WORKFLOW_TEXT = (  # what the prompt carries of the workflow, beyond the task
    "keep your chat output minimal",
    "In Contract Compliance, state point by point: the contract read (its path); each invariant held; scope "
    "respected",
    "## Time budget\nYour attempt may run `$RLM_TIMEOUT_SECONDS` seconds and ends at `$RLM_DEADLINE`",
    "`Self-termination` (why you stopped), `Partial results`",
    "`Next worker plan`",
    "`Required scope`",
)
VERIFY_TEXT = "state the interpreter, the environment and the working directory you ran your commands in"


def assert_workflow_reached_the_model(server: Any, map_ids: list[str], verify_ids: list[str]) -> None:
    """The model saw the workflow's rules in the user text of each worker's first turn."""
    for worker_id in [*map_ids, *verify_ids]:
        prompt = server.for_worker(worker_id)[0]["prompt"]
        for text in WORKFLOW_TEXT:
            assert text in prompt, (worker_id, text)
        assert (VERIFY_TEXT in prompt) is (worker_id in verify_ids), worker_id


def assert_tiers_arrived(repo: Any, server: Any, expected: dict[str, tuple[str, str]]) -> None:
    seen = {worker_id: {(r["model"], r["effort"]) for r in server.for_worker(worker_id)} for worker_id in expected}
    assert seen == {worker_id: {pair} for worker_id, pair in expected.items()}
    entries = repo.provenance()["tasks"]
    assert {worker_id: (entries[worker_id]["model"], entries[worker_id]["effort"]) for worker_id in expected} == \
        expected


def assert_fresh_and_quiet_on_rerun(repo: Any, server: Any, total: int) -> None:
    check = repo.rlm("check")
    assert check.code == 0, check.out + check.err
    before = len(server.requests)
    again = repo.doit()
    assert again.code == 0, again.out
    assert len(server.requests) == before, "a re-run with every report fresh contacted the model server"
    assert f"rlm: 0 ran, 0 failed, {total} fresh in " in again.out
    assert "  start " not in again.out


def assert_failed_with_log(out: str, doit_name: str, log: str, suffix: str = "") -> None:
    line = next((line for line in out.splitlines() if line.startswith(f"  FAILED  {doit_name}: ")), None)
    assert line is not None, out
    attempt = log.rsplit(".attempt-", 1)[1].removesuffix(".log")
    assert line.endswith(f": attempt {attempt}, no_report: no report written; log: {log}{suffix}"), line


# ---- codex -----------------------------------------------------------------------------------------------

def test_codex_run_reaches_fresh_with_the_tier_model_effort_and_prompt(codex_bin: str, repo: Any) -> None:
    home = repo.root / "codex-home"
    timeline = Timeline(responses_server.report_script())
    with ResponsesServer(timeline) as server:
        install_skills(repo, codex_home=home)
        repo.write(config(codex_agent(codex_bin, server.base_url, home), CODEX_TIERS, [
            {"id": "alpha", "goal": "Map the parser.", "compute_tier": "heavy"},
            {"id": "beta", "goal": TRICKY_GOAL},
            {"id": "gamma", "goal": "Map the lexer."},
        ], verify=[{"id": "check", "goal": "Re-check the map reports.", "depends_on": ["alpha", "beta", "gamma"]}]))
        result = repo.doit()
        assert result.code == 0, result.out + result.err
        assert "rlm: 4 ran, 0 failed, 0 fresh in " in result.out
        for name in ("map:alpha", "map:beta", "map:gamma", "verify:check"):
            assert f"  ok      {name}  " in result.out

        heavy, standard = ("gpt-5.2-codex", "xhigh"), ("gpt-5.1-codex-mini", "medium")
        assert_tiers_arrived(repo, server, {"alpha": heavy, "beta": standard, "gamma": standard, "check": standard})
        # one tool call writing the report, one final message, per worker
        assert Counter(r["envelope"]["worker_id"] for r in server.requests) == {w: 2 for w in
                                                                                 ("alpha", "beta", "gamma", "check")}
        assert timeline.max_overlap() <= 2
        # verify ran after every map worker had finished
        assert min(timeline.seen["check"]) > max(t for w in ("alpha", "beta", "gamma") for t in timeline.seen[w])
        assert_prompts_arrived_intact(repo, server, ["alpha", "beta", "gamma", "check"])
        assert_workflow_reached_the_model(server, ["alpha", "beta", "gamma"], ["check"])
        assert TRICKY_GOAL in server.for_worker("beta")[0]["prompt"]
        # `$map-worker` is what makes codex load the installed skill: its SKILL.md went to the model
        skill_messages = [text for text in responses_server.user_texts(server.bodies[0])
                          if "<name>map-worker</name>" in text]
        assert len(skill_messages) == 1
        for section in ("## Self-termination", "## Next worker plan", "## Required scope", "Context hand-off notes"):
            assert section in skill_messages[0], section

        assert_fresh_and_quiet_on_rerun(repo, server, total=4)
        assert server.other_requests == []


def test_codex_worker_without_a_report_fails_with_its_log_and_is_retried(codex_bin: str, repo: Any) -> None:
    with ResponsesServer(codex_retry_script()) as server:
        repo.write(config(codex_agent(codex_bin, server.base_url, repo.root / "codex-home"), CODEX_TIERS, [
            {"id": "flaky", "goal": "Silent on the first attempt.", "retries": 1},
            {"id": "stubborn", "goal": "Never writes a report.", "retries": 1},
            {"id": "mute", "goal": "Never writes a report, no retries."},
        ], max_inflight=3))
        result = repo.doit()
        assert result.code == 1, result.out + result.err
        logs = f"{LOCAL}/logs"
        assert f"  retry   map:flaky: attempt 1, no_report: no report written; log: {logs}/flaky.attempt-1.log; " \
            "attempt 2 (standard) in " \
               in result.out
        assert f"  retry   map:stubborn: attempt 1, no_report: no report written; log: {logs}/stubborn.attempt-1.log" \
            "; attempt 2 " in result.out
        assert "  ok      map:flaky  " in result.out
        assert_failed_with_log(result.out, "map:stubborn", f"{logs}/stubborn.attempt-2.log", " (2 of 2 tries)")
        assert_failed_with_log(result.out, "map:mute", f"{logs}/mute.attempt-1.log")
        assert "rlm: 1 ran, 2 failed, 0 fresh in " in result.out

        # the model server saw each attempt: two for the retried workers, one for mute
        starts = Counter(r["envelope"]["worker_id"] for r in server.requests if not r["has_tool_output"])
        assert starts == {"flaky": 2, "stubborn": 2, "mute": 1}
        for name in ("flaky.attempt-1", "flaky.attempt-2", "stubborn.attempt-1", "stubborn.attempt-2",
                     "mute.attempt-1"):
            assert repo.path(f"{logs}/{name}.log").stat().st_size > 0, name
        assert not repo.path(f"{logs}/mute.attempt-2.log").exists()
        entry = repo.provenance()["tasks"]["flaky"]
        assert [(a["attempt"], a["outcome"], a["exit_code"]) for a in entry["attempts"]] == [
            (1, "no_report", 0), (2, "ok", 0)]
        assert repo.report("flaky").exists() and not repo.report("stubborn").exists()

        check = repo.rlm("check")
        assert check.code == 1
        assert sorted(line.split()[1] for line in check.lines[1:]) == ["map:mute", "map:stubborn"], check.out


# ---- claude ----------------------------------------------------------------------------------------------

def test_claude_run_reaches_fresh_with_the_tier_model_effort_and_prompt(claude_bin: str, repo: Any) -> None:
    config_dir = repo.root / "claude-config"
    install_skills(repo, claude_dir=config_dir)
    with MessagesServer("report") as server:
        repo.write(config(claude_agent(claude_bin, server.base_url, config_dir), CLAUDE_TIERS, [
            {"id": "alpha", "goal": "Map the parser.", "compute_tier": "heavy"},
            {"id": "beta", "goal": TRICKY_GOAL},
        ]))
        result = repo.doit()
        assert result.code == 0, result.out + result.err
        assert "rlm: 2 ran, 0 failed, 0 fresh in " in result.out
        assert_tiers_arrived(repo, server, {"alpha": ("claude-opus-4-6", "high"),
                                            "beta": ("claude-sonnet-4-6", "low")})
        assert Counter(r["envelope"]["worker_id"] for r in server.requests) == {"alpha": 2, "beta": 2}
        for worker_id in ("alpha", "beta"):
            assert server.for_worker(worker_id)[1]["tool_result"].startswith("File created successfully")
        assert_prompts_arrived_intact(repo, server, ["alpha", "beta"])
        assert_workflow_reached_the_model(server, ["alpha", "beta"], [])
        assert TRICKY_GOAL in server.for_worker("beta")[0]["prompt"]
        # the installed skill is offered to the model (Claude Code lists $CLAUDE_CONFIG_DIR/skills)
        listing = [text for text in messages_server.user_texts(server.bodies[0])
                   if "skills are available" in text and "\n- map-worker: " in text]
        assert listing, "the map-worker skill was not listed to the model"
        assert_fresh_and_quiet_on_rerun(repo, server, total=2)


def test_claude_worker_without_a_report_fails_with_its_log_and_is_retried(claude_bin: str, repo: Any) -> None:
    with MessagesServer(claude_retry_script()) as server:
        repo.write(config(claude_agent(claude_bin, server.base_url, repo.root / "claude-config"), CLAUDE_TIERS, [
            {"id": "flaky", "goal": "Silent on the first attempt.", "retries": 1},
            {"id": "mute", "goal": "Never writes a report."},
        ]))
        result = repo.doit()
        assert result.code == 1, result.out + result.err
        logs = f"{LOCAL}/logs"
        assert f"  retry   map:flaky: attempt 1, no_report: no report written; log: {logs}/flaky.attempt-1.log; " \
            "attempt 2 (standard) in " \
               in result.out
        assert "  ok      map:flaky  " in result.out
        assert_failed_with_log(result.out, "map:mute", f"{logs}/mute.attempt-1.log")
        starts = Counter(r["envelope"]["worker_id"] for r in server.requests if not r["has_tool_result"])
        assert starts == {"flaky": 2, "mute": 1}
        assert repo.path(f"{logs}/flaky.attempt-2.log").exists()
        entry = repo.provenance()["tasks"]["flaky"]
        assert [(a["attempt"], a["outcome"]) for a in entry["attempts"]] == [(1, "no_report"), (2, "ok")]
