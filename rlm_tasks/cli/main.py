"""`rlm`: one parser, one dispatch, one function per verb (rlm_tasks/cli/commands/<verb>.py).

Each verb module has HELP, `add_arguments(parser)` and the verb's function, `<verb>(args) -> int`:
a new flag is a change to that one file; a new verb is a new file and its name in VERBS.

Exit codes:
  0    success (check: every report fresh; wait: the run finished and every task is fresh)
  1    something is not done: a task failed; check/wait: a report is stale, missing or invalid;
       archive: refused (no final.json/deferred.json) or failed (nothing archived);
       archive verify: changed, missing or extra files (listed); skills install: a file changed locally
  2    the configuration or the command line is invalid (archive use/release/verify: no such archive);
       `doit` too: a task name no task has (run/doit_commands.py), and a mistake in doit's own options
       where the doit.cfg of `rlm init` names rlm's doit commands (elsewhere doit's own exit 3 remains)
  3    the run is locked by another process (or its lock is stale: --break-lock);
       wait: still running at --timeout; archive use: cleanup.lock busy too long
  70   a bug: "unexpected error", details in .rlm/local/rlm-crash.log
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM; 129 by SIGHUP (terminal closed)
`rlm cleanup` exits 0 also when it skipped because another process is cleaning up.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from rlm_tasks import __version__, layout
from rlm_tasks.errors import UserError, error_line, resource_error
from rlm_tasks.fs import discard_output

EXIT_BUG = 70
EXIT_INTERRUPTED = 130
CRASH_LOG = Path(layout.CRASH_LOG)
COMMANDS = "rlm_tasks.cli.commands"

# Each is rlm_tasks/cli/commands/<verb>.py with HELP, add_arguments and <verb>(args) -> int. A command line
# loads only its own verb's module (`rlm check` pays for no other verb's imports); `rlm --help` loads all.
VERBS = ("init", "validate", "status", "check", "render", "reduce", "deferred", "final", "skills", "run", "wait",
         "archive", "cleanup", "events", "report", "discard")


class Verb(NamedTuple):
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    func: Callable[[argparse.Namespace], int]


def verb(name: str) -> Verb:
    module = importlib.import_module(f"{COMMANDS}.{name}")
    return Verb(name, module.HELP, module.add_arguments, getattr(module, name))


def named_verb(argv: Sequence[str]) -> str | None:
    """The verb a command line names (the first word that is not an option or --config's value), if any."""
    words = iter(argv)
    for word in words:
        if word in ("-c", "--config"):
            next(words, None)
        elif word in ("--", "-h", "--help"):  # `rlm -h check` is rlm's help: every verb with its line
            break
        elif not word.startswith("-"):
            return word if word in VERBS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, the other verbs are names without their options (what `rlm VERB` needs)."""
    parser = argparse.ArgumentParser(
        prog="rlm", description="Declarative MapReduce(+Verify) runner for coding-agent workers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", default=os.environ.get("RLM_CONFIG") or "rlm.yaml",
                        help="the run's rlm.yaml (default: $RLM_CONFIG, as for dodo.py, else rlm.yaml)")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERBS:
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        found = verb(name)
        verb_parser = sub.add_parser(name, help=found.help)
        verb_parser.set_defaults(func=found.func)  # a sub-action (archive verify, ...) sets its own
        found.add_arguments(verb_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(named_verb(argv)).parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except UserError as exc:
        sys.stderr.write(error_line(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("rlm: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `rlm status | head`: no traceback, and none from the last flush either
        discard_output(sys.stdout)
        return 1
    except OSError as exc:
        found = resource_error(exc)  # a full disk, no file descriptors left, ...: one line, exit 1
        if found is None:
            return _crashed()
        sys.stderr.write(error_line(found))
        return found.exit_code
    except Exception as exc:  # a bug, not the user's mistake: say where the details are
        if type(exc).__module__ == "sqlite3":  # doit's database (a cache) is unusable (sqlite3 not imported here)
            sys.stderr.write(f"rlm: unusable sqlite database (doit's, under .rlm/local/): {exc}\n")
            return 1
        return _crashed()


def _crashed() -> int:
    try:
        CRASH_LOG.parent.mkdir(parents=True, exist_ok=True)
        CRASH_LOG.write_text(traceback.format_exc(), encoding="utf-8")
        where = f"details in {CRASH_LOG}"
    except OSError:
        where = "no crash log could be written"
    sys.stderr.write(f"rlm: unexpected error ({where}); please report it\n")
    return EXIT_BUG


def entry() -> None:
    raise SystemExit(main())
