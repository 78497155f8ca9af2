"""A mistake on doit's command line is a usage error (one line, exit 2), never doit's exit 3, which means "locked".

Through the real `doit`: after the dodo loaded (a mistyped task name) always; doit's own option parsing
(before any dodo.py loads) where the doit.cfg that `rlm init` writes names rlm's command classes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import doit
import pytest
from conftest import Repo
from doit.doit_cmd import DoitMain

from rlm_tasks.resources import STARTER_DIR
from rlm_tasks.run import doit_commands

LIST_TASKS = "`doit list` shows the tasks"
NO_SUCH = f"no command, task or target named 'nosuch'; {LIST_TASKS}, `doit help` the commands"

# after the dodo loaded: found by the command that loaded it, with or without doit.cfg
MISTYPED_NAMES = [
    (("nosuch",), f"doit: {NO_SUCH}"),
    (("run", "nosuch"), f"doit: {NO_SUCH}"),
    (("map:aa",), f"doit: no command, task or target named 'map:aa' (did you mean 'map:a'?); "
                  f"{LIST_TASKS}, `doit help` the commands"),
    (("info", "nosuch"), f"doit info: no task named 'nosuch'; {LIST_TASKS}"),  # doit: a KeyError traceback
    (("info",), f"doit info: name exactly one task; {LIST_TASKS}"),
    (("info", "map:a", "map:b"), f"doit info: name exactly one task; {LIST_TASKS}"),
    (("forget", "nosuch"), f"doit forget: no task named 'nosuch'; {LIST_TASKS}"),
    (("clean", "map:*", "nosuch"), f"doit clean: no task named 'nosuch'; {LIST_TASKS}"),
    (("ignore", "nosuch"), f"doit ignore: no task named 'nosuch'; {LIST_TASKS}"),
    (("reset-dep", "map:bb"), f"doit reset-dep: no task named 'map:bb' (did you mean 'map:b'?); {LIST_TASKS}"),
    (("list", "nosuch"), f"doit list: no task named 'nosuch'; {LIST_TASKS}"),
    (("help", "nosuch"), "doit help: no command or task named 'nosuch'; `doit help` lists the commands, "
                         "`doit list` the tasks"),  # doit: its usage, exit 0
    (("strace", "nosuch"), f"doit strace: no task named 'nosuch'; {LIST_TASKS}"),  # doit: "Task dependency ..."
    # doit's own text, made one line (doit names itself after argv[0]: `-m` for `python -m doit`)
    (("--check_file_uptodate", "nosuch"), "doit run: No check_file_uptodate named 'nosuch'. "
                                          "Type '-m help run' to see a list of available checkers."),
]
# doit's option parsing, before any dodo.py loads: rlm's command classes, named in doit.cfg
BAD_OPTIONS = [
    (("--nosuch",), "doit run: option --nosuch not recognized; `doit help run` lists its options"),
    (("-n", "abc"), "doit run: Error parsing parameter 'num_process' <class 'int'>. invalid literal for int() "
                    "with base 10: 'abc'; `doit help run` lists its options"),
    (("run", "--bogus"), "doit run: option --bogus not recognized; `doit help run` lists its options"),
    (("list", "--bogus"), "doit list: option --bogus not recognized; `doit help list` lists its options"),
    (("forget", "-x"), "doit forget: option -x not recognized; `doit help forget` lists its options"),
    (("dumpdb", "--bogus"), "doit dumpdb: option --bogus not recognized; `doit help dumpdb` lists its options"),
    (("tabcompletion", "--shell", "fish"), "doit tabcompletion: Error parsing parameter 'shell'. Provided 'fish' but "
                                           "available choices are: 'bash', 'zsh'.; `doit help tabcompletion` lists "
                                           "its options"),
    (("strace",), f"doit strace: name exactly one task; {LIST_TASKS}"),
]


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under the repository with its mtime and (for a file) its content digest."""
    return {path.relative_to(root).as_posix(): (path.lstat().st_mtime_ns, hashlib.sha256(
        path.read_bytes()).hexdigest() if path.is_file() else "") for path in sorted(root.rglob("*"))}


@pytest.fixture
def ran(repo: Repo) -> Repo:
    """A finished run through the real `doit`: map a, map b."""
    repo.write_command([{"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}])
    first = repo.doit_cli()
    assert first.code == 0, first.out + first.err
    return repo


def with_doit_cfg(repo: Repo) -> None:
    (repo.root / "doit.cfg").write_bytes((STARTER_DIR / "doit.cfg").read_bytes())


def refused_alike(repo: Repo, cases: list[tuple[tuple[str, ...], str]]) -> None:
    before = tree(repo.root)
    for args, line in cases:
        refused = repo.doit_cli(*args)
        assert (refused.code, refused.out, refused.err) == (2, "", line + "\n"), args
        assert tree(repo.root) == before, args  # nothing ran, nothing written, no report moved


@pytest.mark.parametrize("cfg", [False, True], ids=["dodo-only", "doit.cfg"])
@pytest.mark.slow
def test_a_mistyped_task_name_is_a_usage_error(ran: Repo, cfg: bool) -> None:
    if cfg:
        with_doit_cfg(ran)
    refused_alike(ran, MISTYPED_NAMES)
    assert ran.report("a").exists() and ran.report("b").exists()


@pytest.mark.slow
def test_doit_cfg_makes_dodo_options_mistakes_usage_errors_too(ran: Repo) -> None:
    with_doit_cfg(ran)
    refused_alike(ran, BAD_OPTIONS)


@pytest.mark.slow
def test_without_doit_cfg_an_option_mistake_keeps_doit_exit_3(ran: Repo) -> None:
    refused = ran.doit_cli("--nosuch")  # parsed before dodo.py loads: README says so
    assert refused.code == 3 and refused.err.startswith("ERROR: Error parsing Command: option --nosuch not recognized")


@pytest.mark.parametrize("cfg", [False, True], ids=["dodo-only", "doit.cfg"])
@pytest.mark.slow
def test_doits_other_commands_behave_as_before(ran: Repo, cfg: bool) -> None:
    if cfg:
        with_doit_cfg(ran)
    version = ran.doit_cli("--version")
    assert (version.code, version.lines[0]) == (0, ".".join(map(str, doit.__version__)))
    usage = ran.doit_cli("help")
    assert (usage.code, usage.lines[0]) == (0, "doit -- automation tool")
    assert "  -m forget            clear successful run status from internal DB" in usage.lines  # -m: argv[0]
    command_help = ran.doit_cli("help", "info")
    assert (command_help.code, command_help.lines[:2]) == (0, ["PURPOSE", "    show info about a task"])
    task_help = ran.doit_cli("help", "map:a")
    assert (task_help.code, task_help.lines) == (0, ["map:a  A"])
    listed = ran.doit_cli("list")
    assert (listed.code, [line.split()[0] for line in listed.lines]) == (
        0, ["archive", "deferred", "final", "map", "map:a", "map:b", "plan", "reduce", "report", "verify"])
    info = ran.doit_cli("info", "map:a")
    assert info.code == 0 and "status     : up-to-date" in info.lines, info.out
    again = ran.doit_cli()
    assert again.code == 0 and again.lines[-1].startswith("rlm: 0 ran, 0 failed, 2 fresh in "), again.out
    too_many = ran.doit_cli("-n", "-1")  # rlm's own check of -n, behind rlm's Run class too
    assert (too_many.code, too_many.err) == (2, "doit: -n/--process must be between 0 and 256 (the cap of "
                                                "budget.max_inflight), got -1; nothing ran\n")


def test_the_starter_doit_cfg_replaces_every_doit_command_with_rlms() -> None:
    commands = {cls.get_name(): f"rlm_tasks.run.doit_commands:{cls.__name__}" for cls in DoitMain.DOIT_CMDS}
    listed = dict(line.split(" = ") for line in (STARTER_DIR / "doit.cfg").read_text().splitlines()
                  if " = " in line)
    assert listed == commands
    for name, location in listed.items():
        cls = getattr(doit_commands, location.split(":")[1])
        assert cls.get_name() == name and issubclass(cls, doit_commands.UsageErrors)


def test_doit_through_rlms_loader_speaks_the_same(repo: Repo) -> None:
    """`rlm run` and doit's API load rlm's tasks inside the command (tasks.RlmTaskLoader), as doit loads dodo.py."""
    repo.write_command([{"id": "a", "goal": "A"}])
    refused = repo.doit("info", "map:b")  # in-process: DoitMain(RlmTaskLoader("rlm.yaml"))
    assert (refused.code, refused.out, refused.err) == (
        2, "", f"doit info: no task named 'map:b' (did you mean 'map:a'?); {LIST_TASKS}\n")
    assert not repo.report("a").exists()
