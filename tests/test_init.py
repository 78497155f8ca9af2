"""`rlm init` in any git repository: starter files that validate and run offline, a clean tree in a fresh clone."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, Repo, subprocess_env

from rlm_tasks import __version__
from rlm_tasks.agents import KINDS
from rlm_tasks.resources import SCHEMA_DIR

RUN = ".rlm/runs/first-run"
NEXT = ("next:\n"
        "  doit                  # run the starter tasks\n"
        "  rlm check             # exit 0: every report is fresh\n"
        "  git add rlm.yaml dodo.py doit.cfg .gitignore .rlm && git commit -m 'rlm: starter run'\n")
WROTE = ("wrote rlm.yaml\nwrote dodo.py\nwrote .rlm/rlm.schema.json\nwrote .rlm/starter_worker.py\n"
         "wrote doit.cfg\nwrote .gitignore\n")
SUMMARY = (r"rlm: {ran} ran, 0 failed, {fresh} fresh in \d+\.\d+s; "
           r"inventory: \.rlm/runs/first-run/reduce_state.json")


def git(*args: str, cwd: Path) -> str:
    env = {**subprocess_env(), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def empty(repo: Repo) -> Repo:
    """An empty git repository in tmp_path/work (so tests have room beside it)."""
    root = repo.root / "work"
    root.mkdir()
    git("init", "-q", cwd=root)
    return Repo(root, repo.monkeypatch, repo.capsys)


@pytest.mark.slow
def test_init_in_an_empty_repository_runs_offline_and_a_fresh_clone_stays_clean(empty: Repo, tmp_path: Path) -> None:
    init = empty.rlm_cli("init", "--run-id", "first-run")
    assert (init.code, init.out, init.err) == (0, WROTE + NEXT, "")
    assert (empty.root / "dodo.py").read_bytes() == (REPO / "dodo.py").read_bytes()
    assert (empty.root / "doit.cfg").read_bytes() == (REPO / "doit.cfg").read_bytes()  # this repository's own
    assert (empty.root / ".gitignore").read_text() == (
        "# rlm: machine-local state (doit database, caches, locks, logs)\n/.rlm/local/\n")
    assert empty.rlm_cli("validate").out == "rlm.yaml: valid: run first-run, 2 map tasks, 1 verify tasks\n"

    first = empty.doit_cli()
    assert first.code == 0, first.out + first.err
    assert re.fullmatch(SUMMARY.format(ran=3, fresh=0), first.lines[-1])
    assert empty.rlm_cli("check").code == 0
    assert "the claim holds." in (empty.root / RUN / "artifacts/reports/recount.md").read_text()
    git("add", "-A", cwd=empty.root)
    git("commit", "-q", "-m", "rlm init", cwd=empty.root)
    committed = git("ls-files", cwd=empty.root).splitlines()
    assert f"{RUN}/provenance.json" in committed and f"{RUN}/artifacts/reports/inventory.md" in committed
    assert not [path for path in committed if path.startswith(".rlm/local/")]

    clone = tmp_path / "clone"
    git("clone", "-q", str(empty.root), str(clone), cwd=tmp_path)
    again = empty.doit_cli(cwd=clone)
    assert again.code == 0, again.out + again.err
    assert re.fullmatch(SUMMARY.format(ran=0, fresh=3), again.lines[-1])  # no worker ran
    for verb in (["check"], ["status"], ["status", "--json"], ["reduce"], ["deferred"], ["render"], ["validate"]):
        assert empty.rlm_cli(*verb, cwd=clone).code == 0, verb
    assert empty.doit_cli("list", cwd=clone).code == 0
    assert git("status", "--porcelain", "--untracked-files=all", cwd=clone) == ""  # not one committed byte changed


def test_the_modeline_names_a_schema_copy_that_exists_in_the_repository(empty: Repo) -> None:
    empty.rlm_cli("init", "--run-id", "first-run")
    first = (empty.root / "rlm.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=.rlm/rlm.schema.json"
    assert (empty.root / ".rlm/rlm.schema.json").read_bytes() == (SCHEMA_DIR / "rlm.schema.json").read_bytes()


@pytest.mark.slow
def test_init_never_overwrites_without_force(empty: Repo) -> None:
    (empty.root / "rlm.yaml").write_text("version: 1\n")
    (empty.root / "dodo.py").write_text("# my own tasks\n")
    refused = empty.rlm_cli("init", "--run-id", "first-run")
    assert (refused.code, refused.out, refused.err) == (
        1, "", "rlm: init: rlm.yaml, dodo.py exist; nothing written (--force overwrites, "
               "or add the rlm tasks to your dodo.py: see docs/adopting.md)\n")
    assert sorted(p.name for p in empty.root.iterdir()) == [".git", "dodo.py", "rlm.yaml"]  # nothing written
    assert (empty.root / "rlm.yaml").read_text() == "version: 1\n"

    forced = empty.rlm_cli("init", "--run-id", "first-run", "--force")
    assert (forced.code, forced.out) == (0, WROTE + NEXT)
    assert empty.rlm_cli("validate").code == 0


def test_init_twice_changes_nothing_and_keeps_an_existing_gitignore(empty: Repo) -> None:
    (empty.root / ".gitignore").write_text("build/")  # no trailing newline
    assert empty.rlm_cli("init", "--run-id", "first-run").code == 0
    assert (empty.root / ".gitignore").read_text() == (
        "build/\n# rlm: machine-local state (doit database, caches, locks, logs)\n/.rlm/local/\n")
    again = empty.rlm_cli("init", "--run-id", "first-run")
    assert (again.code, again.out) == (0, WROTE.replace("wrote", "unchanged") + NEXT)


@pytest.mark.slow
def test_init_keeps_an_existing_doit_cfg_and_says_what_to_add(empty: Repo) -> None:
    mine = "[GLOBAL]\nverbosity = 2\n"
    (empty.root / "doit.cfg").write_text(mine)
    result = empty.rlm_cli("init", "--run-id", "first-run", "--force")
    assert result.code == 0
    assert (empty.root / "doit.cfg").read_text() == mine  # not even --force rewrites it
    lines = result.out.splitlines()
    start = lines.index("note: doit.cfg exists and was left alone; until it has these lines, doit's own command-line "
                        "errors (`doit --nosuch`) keep doit's exit 3 instead of rlm's 2:")
    assert lines[start + 1:start + 4] == ["  [COMMAND]", "  run = rlm_tasks.run.doit_commands:Run",
                                          "  list = rlm_tasks.run.doit_commands:List"]
    assert len([line for line in lines if line.startswith("  ") and " = " in line]) == 11
    assert empty.doit_cli("--nosuch").code == 3  # doit's own parsing, as the note says

    added = "\n".join(line.strip() for line in lines[start + 1:start + 13])  # [COMMAND] and its 11 lines
    (empty.root / "doit.cfg").write_text(mine + added + "\n")
    again = empty.rlm_cli("init", "--run-id", "first-run")
    assert "unchanged doit.cfg" in again.lines and not [line for line in again.lines if "note" in line]
    refused = empty.doit_cli("--nosuch")
    assert (refused.code, refused.err) == (2, "doit run: option --nosuch not recognized; `doit help run` lists its "
                                              "options\n")


def test_init_says_when_gitignore_hides_the_whole_run_record(empty: Repo) -> None:
    (empty.root / ".gitignore").write_text("/.rlm/\n")
    result = empty.rlm_cli("init", "--run-id", "first-run")
    assert result.out.splitlines()[6] == (
        "note: .gitignore ignores all of .rlm/, so the run's record under .rlm/runs/ would not be committed; "
        "ignore only /.rlm/local/")


@pytest.mark.slow
def test_upgrade_refreshes_only_the_files_the_tool_owns(empty: Repo) -> None:
    empty.rlm_cli("init", "--run-id", "first-run")
    (empty.root / ".rlm/rlm.schema.json").write_text("{}\n")  # an older version's copy
    (empty.root / "rlm.yaml").write_text((empty.root / "rlm.yaml").read_text() + "# mine\n")
    assert empty.rlm_cli("validate").lines[-1] == (
        "note: .rlm/rlm.schema.json differs from this rlm's schema; `rlm init --upgrade` refreshes it")
    upgraded = empty.rlm_cli("init", "--run-id", "first-run", "--upgrade")
    assert (upgraded.code, upgraded.out) == (
        0, "wrote .rlm/rlm.schema.json\nunchanged .rlm/starter_worker.py\nunchanged doit.cfg\n")
    assert (empty.root / ".rlm/rlm.schema.json").read_bytes() == (SCHEMA_DIR / "rlm.schema.json").read_bytes()
    assert (empty.root / "rlm.yaml").read_text().endswith("# mine\n")
    assert empty.rlm_cli("validate").out == "rlm.yaml: valid: run first-run, 2 map tasks, 1 verify tasks\n"


@pytest.mark.parametrize("agent", [name for name, kind in KINDS.items() if kind.DEFAULT_BINARY])
@pytest.mark.slow
def test_agent_starters_validate(empty: Repo, agent: str) -> None:
    result = empty.rlm_cli("init", "--run-id", "first-run", "--agent", agent)
    assert result.out.splitlines()[:5] == ["wrote rlm.yaml", "wrote dodo.py", "wrote .rlm/rlm.schema.json",
                                           "wrote doit.cfg", "wrote .gitignore"]  # no bundled worker
    assert f"  kind: {agent} " in (empty.root / "rlm.yaml").read_text()
    validated = empty.rlm_cli("validate")
    assert validated.code == 0 and "warning: agent kind" not in validated.out + validated.err  # its own tiers
    (empty.root / ".rlm/rlm.schema.json").write_text("{}\n")
    (empty.root / "doit.cfg").unlink()  # a repository adopted before rlm wrote one
    upgraded = empty.rlm_cli("init", "--run-id", "first-run", "--upgrade")
    assert (upgraded.code, upgraded.out) == (0, "wrote .rlm/rlm.schema.json\nwrote doit.cfg\n")  # still no worker


def test_ci_github_writes_a_workflow_that_runs_rlm_check(empty: Repo) -> None:
    result = empty.rlm_cli("init", "--run-id", "first-run", "--ci", "github")
    assert "wrote .github/workflows/rlm.yml" in result.lines
    workflow = (empty.root / ".github/workflows/rlm.yml").read_text()
    assert f'      - run: python -m pip install "rlm-tasks=={__version__}"\n      - run: rlm validate\n' \
           "      - run: rlm check\n" in workflow
    assert "secrets" not in workflow and "codex" not in workflow


def test_init_refuses_a_directory_that_leads_outside_the_repository(empty: Repo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (empty.root / ".rlm").symlink_to(outside)
    result = empty.rlm_cli("init", "--run-id", "first-run")
    assert (result.code, result.err) == (
        1, f"rlm: init: .rlm/rlm.schema.json: its directory leads outside the repository ({outside}); "
           "nothing written\n")
    assert list(outside.iterdir()) == [] and not (empty.root / "rlm.yaml").exists()


def test_version(repo: Repo) -> None:
    result = repo.rlm_cli("--version")
    assert (result.code, result.out) == (0, f"rlm {__version__}\n")


@pytest.mark.slow
def test_a_second_run_in_the_same_repository_through_rlm_config(empty: Repo) -> None:
    empty.rlm_cli("init", "--run-id", "first-run")
    starter = (empty.root / "rlm.yaml").read_text()
    (empty.root / "second.yaml").write_text(starter.replace("run_id: first-run", "run_id: second"))
    ran = empty.doit_cli(RLM_CONFIG="second.yaml")
    assert ran.code == 0 and ran.lines[0] == "rlm: run second: 3 tasks", ran.out + ran.err
    assert empty.rlm_cli("status", RLM_CONFIG="second.yaml").lines[0] == (
        "run second: 3 tasks: 3 fresh, 0 stale, 0 missing, 0 invalid")
    assert empty.rlm_cli("-c", "second.yaml", "check").code == 0
    assert empty.rlm_cli("check").code == 1  # rlm.yaml's run has not run


@pytest.mark.slow
def test_the_pre_commit_hooks_run_rlm_verbs_that_pass_on_a_fresh_run(empty: Repo) -> None:
    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert [hook["id"] for hook in hooks] == ["rlm-validate", "rlm-check"]
    assert re.search(hooks[0]["files"], "docs/rlm.yaml") and not re.search(hooks[0]["files"], "rlm.yaml.bak")
    empty.rlm_cli("init", "--run-id", "first-run")
    assert empty.doit_cli().code == 0
    for hook in hooks:
        program, *args = hook["entry"].split()
        assert (program, hook["language"], hook["pass_filenames"]) == ("rlm", "python", False)
        assert empty.rlm_cli(*args).code == 0, hook["id"]
    (empty.root / "rlm.yaml").write_text("version: 1\n")
    assert empty.rlm_cli(*hooks[0]["entry"].split()[1:]).code == 2  # the hook fails the commit
