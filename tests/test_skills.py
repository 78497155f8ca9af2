"""`rlm skills install`: where the skills go, and never clobbering a local edit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import Repo

from rlm_tasks.cli import main as cli_main
from rlm_tasks.cli.main import main
from rlm_tasks.config import schema
from rlm_tasks.install import skills

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", skills.SKILL_NAMES)
def test_skill_files_have_frontmatter_codex_and_claude_read(name: str) -> None:
    text = (skills.SKILLS_DIR / name / "SKILL.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["name"] == name
    assert len(front["description"]) > 40


def test_map_worker_skill_names_every_report_section() -> None:
    text = (skills.SKILLS_DIR / "map-worker" / "SKILL.md").read_text()
    for section in (
        "What I did",
        "Key findings",
        "Evidence",
        "Open questions / risks",
        "Deferred opportunities",
        "Contract Compliance",
    ):
        assert f"## {section}" in text
    assert "Self-termination" in text and "Progress notes" in text


def test_install_update_refuse_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    codex, claude = tmp_path / "codex", tmp_path / "claude"
    args = ["skills", "install", "--codex-home", str(codex), "--claude-dir", str(claude)]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert first == [
        f"installed {base}/skills/{name}/SKILL.md" for base in (codex, claude) for name in skills.SKILL_NAMES
    ]
    installed = codex / "skills" / "map-worker" / "SKILL.md"
    assert installed.read_bytes() == (skills.SKILLS_DIR / "map-worker" / "SKILL.md").read_bytes()
    marker = yaml.safe_load((installed.parent / skills.MARKER).read_text())
    assert schema.check("skill_marker", marker) == []

    assert main(args) == 0
    assert all(line.startswith("up to date ") for line in capsys.readouterr().out.splitlines())

    installed.write_text(installed.read_text() + "\nmy local note\n")
    assert main(args) == 1
    out = capsys.readouterr().out
    assert f"refused {installed}: changed locally; use --force to overwrite" in out.splitlines()
    assert installed.read_text().endswith("my local note\n")

    assert main([*args, "--force"]) == 0
    assert f"installed {installed}" in capsys.readouterr().out.splitlines()
    assert not installed.read_text().endswith("my local note\n")


def test_install_replaces_an_older_copy_it_installed(tmp_path: Path) -> None:
    codex, claude = tmp_path / "codex", tmp_path / "claude"
    skills.install({"codex": str(codex), "claude": str(claude)})
    installed = claude / "skills" / "reduce-orchestrator" / "SKILL.md"
    older = "an older version rlm installed\n"
    installed.write_text(older)
    (installed.parent / skills.MARKER).write_text(
        json.dumps({"skill": "reduce-orchestrator", "sha256": skills.sha256_file(installed)})
    )
    result = skills.install({"codex": str(codex), "claude": str(claude)})
    assert result.refused == [] and str(installed) in result.installed


def test_codex_home_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "env-codex"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    result = skills.install()
    assert str(tmp_path / "env-codex" / "skills" / "map-worker" / "SKILL.md") in result.installed
    assert str(tmp_path / "home" / ".claude" / "skills" / "map-worker" / "SKILL.md") in result.installed


def test_claude_config_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = skills.install()
    assert str(tmp_path / "claude-config" / "skills" / "map-worker" / "SKILL.md") in result.installed


def test_every_kind_that_reads_skills_gets_them_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for where in skills.HOMES.values():
        monkeypatch.delenv(where.variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GEMINI_CLI_HOME", str(tmp_path / "g"))
    result = skills.install()
    assert sorted(result.installed) == sorted(
        str(tmp_path / base / "skills" / name / "SKILL.md") for name in skills.SKILL_NAMES
        for base in (".codex", ".claude", "g/.gemini", ".config/opencode"))


@pytest.mark.parametrize("agent", sorted(skills.HOMES))
def test_naming_one_agents_directory_installs_for_that_agent_only(repo: Repo, agent: str) -> None:
    option = skills.HOMES[agent].option
    result = repo.rlm_cli("skills", "install", option, str(repo.root / agent))
    assert (result.code, result.out) == (0, "".join(
        f"installed {repo.root / agent}/skills/{name}/SKILL.md\n" for name in skills.SKILL_NAMES))
    assert sorted(p.name for p in repo.root.iterdir()) == [agent]  # nothing for the other agent


@pytest.mark.parametrize("kind", sorted(skills.HOMES))
@pytest.mark.slow
def test_a_run_warns_when_its_workers_lack_the_skill(repo: Repo, kind: str) -> None:
    variable, option = skills.HOMES[kind].variable, skills.HOMES[kind].option
    above = repo.root / f"{kind} home"  # a space: the command is quoted
    home = above / skills.HOMES[kind].inside  # gemini: $GEMINI_CLI_HOME/.gemini
    repo.write_codex([{"id": "a", "goal": "A"}], agent={"kind": kind, "env": {
        variable: str(above), "FAKE_AGENT_LOG": str(repo.log), "FAKE_AGENT_MODE": "ok"}})
    first = repo.rlm_cli("run")
    warning = (f"rlm: warning: the map-worker skill is not installed where {kind} workers look ({home}/skills/); "
               f"install it with `rlm skills install {option} '{home}'`")
    assert warning in first.lines, first.out + first.err  # (the fake codex fails with another kind's argv: no matter)
    installed = repo.rlm_cli("skills", "install", option, str(home))
    assert installed.code == 0
    again = repo.rlm_cli("run")
    assert again.lines[0] == "rlm: run t: 1 tasks", again.out  # no warning any more


def _flat(name: str) -> str:
    """The skill's text with line breaks and indentation folded, so wrapping never hides a phrase."""
    return " ".join((skills.SKILLS_DIR / name / "SKILL.md").read_text().split())


# Every rule the workflow makes mandatory, each with the phrases that carry it in this tool's terms
# (exact commands and paths). A rewrite that drops one fails here.
ORCHESTRATOR_RULES = {
    "operate on paths and small state files only": [
        "Operate on paths and small state files only", "`reduce_state.json`", "`deferred.json`", "`plan.json`",
        "`final.json`"],
    "never read logs (ask the user)": ["Never read worker logs", "ask the user to look at the log path"],
    "no domain work; record a deviation": ["Do no domain work yourself", "`decision.deviations`",
                                           "(`what`, `why`, `repair`)"],
    "environment baseline from AGENTS.md or the user, in the contract": [
        "`AGENTS.md`", "ask the user for the environment baseline", "`contract.verification`"],
    "model-escalation protocol": ["Model escalation protocol", "name the failure mode",
                                  "propose the smallest change", "fall back to scope reduction"],
    "models are the user's choice": ["ask the user before changing any tier's model"],
    "DECIDE criteria": ["is **finished** when every `success_criteria` item is met",
                        "the verify reports confirm", "Otherwise iterate"],
    "rehydration": ["rehydrate from disk", "run `rlm status` and `rlm reduce` first",
                    "state that rehydration was done and which paths you used"],
    "deferred opportunities in the final message": ["Deferred opportunities", "\"none identified\""],
    "how to start a run": ["`rlm init`", "`run_<UTC timestamp>_<slug>`", "new `run_id`", "`rlm validate`"],
    "safe-first waves": ["`rlm run --wave` starts at most `budget.max_inflight` ready tasks",
                         "does not refill slots", "never starts a join task", "`--allow-refill`"],
    "joins": ["`rlm run --wave --allow-join`", "`join-...`", "`join: true`"],
    "adoption after a crash": ["`rlm run --wave --adopt`", "adoption"],
    "retries and escalation": ["`retries: N`", "`escalate: true`"],
    "verify is mandatory, top-K": ["**VERIFY** (mandatory)", "at most 5 tasks under `verify:`"],
    "final and archive": ["`rlm final`", "`rlm archive`", "`rlm run --reopen`"],
    "drift, attributed": ["**Drift**", "`attribution`", "repair or scope-trim task"],
    "partial reports": ["`Next worker plan`", "`accept_partial: true`"],
    "one orchestrator, exit codes": ["exits 3", "`--break-lock`", "Exit codes"],
}
WORKER_RULES = {
    "do not invent facts; mark uncertainty": ["Do not invent facts", "mark the uncertainty"],
    "commands verbatim with key outputs": ["Executed commands verbatim", "key outputs"],
    "intermediate artifacts with reproduce commands": [
        "`.rlm/runs/<run_id>/artifacts/work/<worker_id>/`", "the command that reproduces it"],
    "scope expansion written down": ["scope expansion", "written down in Contract Compliance"],
    "contract updates and environment in Contract Compliance": ["Requested contract updates", "Environment used"],
    "drift: record, recommend, self-terminate": ["do not quietly fix it", "recommend a repair or scope-trim worker",
                                                 "If the drift makes your own work unreliable, self-terminate"],
    "the four partial sections": ["## Self-termination", "## Partial results", "## Next worker plan",
                                  "## Required scope", "All four are required"],
    "Contract Compliance always": ["`Contract Compliance` always"],
    "progress cadence": ["`RLM_PROGRESS_PATH`", "a progress line within N s of starting, then every M s"],
    "time budget": ["`RLM_TIMEOUT_SECONDS`", "`RLM_DEADLINE`"],
    "minimal chat output": ["Keep your chat output minimal", "never reads your log"],
}


@pytest.mark.parametrize(("name", "rules"), [("reduce-orchestrator", ORCHESTRATOR_RULES),
                                             ("map-worker", WORKER_RULES)])
def test_the_skills_carry_every_mandatory_rule(name: str, rules: dict[str, list[str]]) -> None:
    text = _flat(name)
    missing = {rule: [p for p in phrases if " ".join(p.split()) not in text] for rule, phrases in rules.items()}
    assert {rule: gone for rule, gone in missing.items() if gone} == {}


def test_every_command_the_orchestrator_skill_names_exists() -> None:
    named = set(re.findall(r"`rlm ([a-z]+)", _flat("reduce-orchestrator")))
    assert named >= {"init", "validate", "run", "status", "reduce", "wait", "final", "archive", "check"}
    assert named <= set(cli_main.VERBS), named - set(cli_main.VERBS)
    flags = set(re.findall(r"`rlm run [^`]*`", _flat("reduce-orchestrator")))
    for usage in flags:  # every `rlm run ...` it shows parses
        args = [word for word in usage.strip("`").split()[2:] if not word.startswith("<")]
        cli_main.build_parser().parse_args(["run", *args])
