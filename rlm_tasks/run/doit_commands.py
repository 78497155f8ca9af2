"""doit's command layer speaks rlm's exit codes: a mistyped task name, option or value is a usage error.

doit exits 3 for every mistake on its command line (`doit nosuch`, `doit -n abc`) and prints some as a
traceback (`doit info nosuch`); to an orchestrating agent rlm's 3 means "locked, wait and retry". Here
such a mistake becomes one line and exit 2, before anything runs. Two hooks, because doit parses its
command line before it loads dodo.py:
- `guard_loading_command()`, called as rlm's tasks load (dodo.py, tasks.RlmTaskLoader), wraps the
  command that is loading them (doit's DoitCmdBase.execute): what the command finds wrong with the
  task names and option values it was given, and rlm's cap on -n;
- the command classes below (Run, List, ...) replace doit's own when a doit.cfg names them (`rlm init`
  writes one): doit's option parsing too, which happens before any dodo.py is imported.
"""

from __future__ import annotations

import functools
import getopt
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from doit.cmd_base import Command, DoitCmdBase
from doit.cmd_help import Help as DoitHelp
from doit.cmdparse import CmdParseError
from doit.doit_cmd import DoitMain
from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask

from rlm_tasks.config.defaults import MAX_INFLIGHT_CAP
from rlm_tasks.errors import UserError, close_match, error_line, exit_with, resource_error
from rlm_tasks.fs import discard_output
from rlm_tasks.layout import DOIT_DB
from rlm_tasks.run import worker

EXIT_USAGE = 2
LIST_TASKS = "`doit list` shows the tasks"
USAGE_ERRORS = (CmdParseError, InvalidCommand, InvalidDodoFile, InvalidTask)


def usage_error(command: str, err: BaseException, names: Sequence[str], tasks: Iterable[str]) -> UserError | None:
    """The one-line usage error for what doit raised, or None when it is not the user's mistake (a bug)."""
    known = list(tasks)
    unknown = _unknown_name(err, names, known)
    if unknown is not None:
        return UserError(no_such(command, unknown, known), exit_code=EXIT_USAGE)
    if isinstance(err, InvalidCommand) and command in ("info", "strace") and len(names) != 1:
        return UserError(f"doit {command}: name exactly one task; {LIST_TASKS}", exit_code=EXIT_USAGE)
    if isinstance(err, CmdParseError):  # doit's text for an unknown option lists every option's repr
        what = err.__context__ if isinstance(err.__context__, getopt.GetoptError) else " ".join(str(err).split())
        return UserError(f"doit {command}: {what}; `doit help {command}` lists its options", exit_code=EXIT_USAGE)
    if isinstance(err, USAGE_ERRORS):
        return UserError(f"doit {command}: {' '.join(str(err).split())}", exit_code=EXIT_USAGE)
    return None


def _unknown_name(err: BaseException, names: Sequence[str], known: list[str]) -> str | None:
    """The name the user typed that doit found no task for, when that is what `err` says."""
    if isinstance(err, InvalidCommand) and err.not_found:
        return str(err.not_found)
    if isinstance(err, KeyError):  # `doit info NAME` looks NAME up without checking it
        key = err.args[0] if err.args else None
        return key if isinstance(key, str) and key in names and key not in known else None
    if isinstance(err, (InvalidCommand, InvalidTask)):  # "'NAME' is not a task." (clean skips wildcards)
        return next((name for name in names if name not in known and "*" not in name), None)
    return None


def no_such(command: str, name: str, known: list[str]) -> str:
    close = close_match(name, known)
    hint = f" (did you mean '{close}'?)" if close else ""
    if command == "run":  # also `doit NAME`: doit takes a word that is no command for a task
        return (f"doit: no command, task or target named '{name}'{hint}; "
                f"{LIST_TASKS}, `doit help` the commands")
    if command == "help":
        return (f"doit help: no command or task named '{name}'{hint}; "
                "`doit help` lists the commands, `doit list` the tasks")
    return f"doit {command}: no task named '{name}'{hint}; {LIST_TASKS}"


def _task_names(command: Any) -> list[str]:
    return [task.name for task in getattr(command, "task_list", None) or ()]


def check_num_process(value: Any) -> None:
    """doit takes any integer for -n; rlm's cap is budget.max_inflight's (0 is doit's own: no parallel workers)."""
    if isinstance(value, int) and not 0 <= value <= MAX_INFLIGHT_CAP:
        exit_with(UserError(f"doit: -n/--process must be between 0 and {MAX_INFLIGHT_CAP} (the cap of "
                          f"budget.max_inflight), got {value}; nothing ran", exit_code=EXIT_USAGE))


def _selected(command: Any) -> list[str]:
    """The task names given on the command line (DoitCmdBase.execute sets them once dodo.py loaded)."""
    return [] if getattr(command, "sel_default_tasks", True) else list(command.sel_tasks or ())


def guard_loading_command() -> str | None:
    """Make the doit command that is importing dodo.py (if one is) speak rlm's exit codes; its name.

    dodo.py is imported inside DoitCmdBase.execute, which then looks up and calls the command's
    `get_checker_cls` and `_execute`: wrapping them on that instance catches every mistake it finds
    in the task names and option values it was given. Nothing happens when the tasks are loaded
    outside a command (doit's API with a ModuleTaskLoader).
    """
    frame = sys._getframe(1)
    while frame is not None and frame.f_code is not DoitCmdBase.execute.__code__:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None or not isinstance(frame.f_locals.get("self"), DoitCmdBase):
        return None
    command, names = frame.f_locals["self"], list(frame.f_locals.get("args") or ())
    for attribute in ("get_checker_cls", "_execute"):
        setattr(command, attribute, _guarded(command, getattr(command, attribute), names))
    _loading.append(command)
    return str(command.name)


# doit commands that change doit's state (its database): they run under the run lock, never beside a run
STATE_CHANGING = frozenset({"forget", "ignore", "reset-dep"})
_loading: list[Any] = []  # the command guard_loading_command wrapped last


def lock_state_change(lock: Callable[[], Any]) -> None:
    """The loading command, when it changes state, holds `lock()` (a RunLock) while it runs: a `doit forget`
    beside a run is refused with the lock's one line, exit 3."""
    if _loading and _loading[-1].name in STATE_CHANGING:
        _loading[-1].rlm_lock = lock


def _guarded(command: Any, method: Callable[..., Any], names: list[str]) -> Callable[..., Any]:
    @functools.wraps(method)  # doit reads _execute's signature to pick the options it passes
    def call(*args: Any, **kwargs: Any) -> Any:
        check_num_process(kwargs.get("num_process", 0))  # `run`'s -n, from the command line or DOIT_CONFIG
        lock = getattr(command, "rlm_lock", None) if method.__name__ == "_execute" else None
        if lock is not None and not set(names) <= set(_task_names(command)):
            lock = None  # a mistyped name: doit refuses it before changing anything, and no lock file is touched
        held = None
        if lock is not None:
            held = lock()
            try:
                held.acquire()
            except UserError as exc:  # a run holds it: exit 3 with its one line
                exit_with(exc)
        try:
            result = method(*args, **kwargs)
        except (*USAGE_ERRORS, KeyError) as exc:
            error = usage_error(command.name, exc, names, _task_names(command))
            if error is None:
                raise
            exit_with(error)
        except BrokenPipeError:  # `doit list | head`: the reader has what it wanted; as `rlm` does, exit 1
            discard_output(sys.stdout)
            raise SystemExit(1) from None
        except OSError as exc:  # a full disk, no file descriptors, ...: one line, workers ended, exit 1
            found = resource_error(exc)
            if found is None:
                raise
            _end_workers()
            exit_with(found)
        except Exception as exc:
            if type(exc).__module__ != "sqlite3":
                raise
            _end_workers()
            exit_with(UserError(f"unusable sqlite database {DOIT_DB} (doit's cache; provenance keeps what is "
                                f"fresh): {exc}"))
        finally:
            if held is not None:
                held.release()
        if isinstance(command, DoitHelp) and result is False:  # doit would print its usage, exit 0
            exit_with(UserError(no_such("help", names[0], _task_names(command)), exit_code=EXIT_USAGE))
        return result
    return call


def _end_workers() -> None:
    """rlm failed inside a run: every worker group it started ends before it exits (finished work is kept)."""
    worker.begin_shutdown(signal.SIGTERM)
    worker.drain(worker.kill_grace_or_default())


class UsageErrors(Command):  # type: ignore[misc]
    """doit's command, with its own usage errors (options parsed before dodo.py loads) as rlm's."""

    def parse_execute(self, in_args: list[str]) -> Any:
        try:
            return super().parse_execute(in_args)
        except (*USAGE_ERRORS, KeyError) as exc:
            error = usage_error(self.name, exc, _selected(self), _task_names(self))
            if error is None:
                raise
            sys.stderr.write(error_line(error))
            return error.exit_code


_CORE = {command.__name__: command for command in DoitMain.DOIT_CMDS}


def _speaking_rlm(name: str) -> type:
    return type(name, (UsageErrors, _CORE[name]), {"__module__": __name__, "__doc__": _CORE[name].__doc__})


# doit.cfg names each as `<command> = rlm_tasks.run.doit_commands:<class>` (`rlm init` writes it)
Run = _speaking_rlm("Run")
List = _speaking_rlm("List")
Info = _speaking_rlm("Info")
Clean = _speaking_rlm("Clean")
Forget = _speaking_rlm("Forget")
Ignore = _speaking_rlm("Ignore")
Help = _speaking_rlm("Help")
DumpDB = _speaking_rlm("DumpDB")
Strace = _speaking_rlm("Strace")
TabCompletion = _speaking_rlm("TabCompletion")
ResetDep = _speaking_rlm("ResetDep")
