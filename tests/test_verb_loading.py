"""`rlm VERB` loads only its own verb's module: `rlm check` in CI pays for neither doit nor the other verbs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import Repo, subprocess_env

from rlm_tasks.cli.main import VERBS, named_verb

LOADED = ("import sys\nfrom rlm_tasks.cli.main import main\ncode = main(sys.argv[1:])\n"
          "print(code, sorted(m for m in sys.modules if m.startswith('rlm_tasks.cli.commands.') or m == 'doit'))\n")


def loaded(repo: Repo, *argv: str) -> str:
    proc = subprocess.run([sys.executable, "-c", LOADED, *argv], cwd=repo.root, env=subprocess_env(),
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.splitlines()[-1]


@pytest.mark.slow
def test_rlm_check_loads_the_check_verb_and_not_doit(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    assert loaded(repo, "check") == "1 ['rlm_tasks.cli.commands.check']"  # the report is missing: exit 1
    assert loaded(repo, "-c", "rlm.yaml", "status") == "0 ['rlm_tasks.cli.commands.status']"


@pytest.mark.parametrize(("argv", "verb"), [
    (["check"], "check"), (["-c", "status", "check"], "check"), (["--config", "x.yaml", "run", "a"], "run"),
    (["--config=x.yaml", "wait"], "wait"), (["-cx.yaml", "final"], "final"), (["--help"], None), ([], None),
    (["bogus"], None), (["--", "check"], None), (["-h", "check"], None), (["check", "-h"], "check"),
])
def test_the_verb_of_a_command_line(argv: list[str], verb: str | None) -> None:
    assert named_verb(argv) == verb


@pytest.mark.slow
def test_every_verb_still_has_its_options_and_help(repo: Repo) -> None:
    result = repo.rlm_cli("--help")
    assert result.code == 0
    for verb in VERBS:
        assert f"    {verb} " in result.out
    assert repo.rlm_cli("check", "--bogus").err.endswith("rlm: error: unrecognized arguments: --bogus\n")
