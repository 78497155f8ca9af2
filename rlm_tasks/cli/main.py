"""`rlm`: one parser, one dispatch, one function per verb (rlm_tasks/cli/commands/<verb>.py).

Each verb module has HELP, `add_arguments(parser)` and the verb's function, `<verb>(args) -> int`:
a new flag is a change to that one file; a new verb is a new file and one line in VERBS.

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
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM
`rlm cleanup` exits 0 also when it skipped because another process is cleaning up.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from rlm_tasks import __version__, layout
from rlm_tasks.cli.commands import (
    archive,
    check,
    cleanup,
    deferred,
    final,
    init,
    reduce,
    render,
    run,
    skills,
    status,
    validate,
    wait,
)
from rlm_tasks.errors import UserError, error_line

EXIT_BUG = 70
EXIT_INTERRUPTED = 130
CRASH_LOG = Path(layout.CRASH_LOG)


class Verb(NamedTuple):
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    func: Callable[[argparse.Namespace], int]


VERBS = (
    Verb("init", init.HELP, init.add_arguments, init.init),
    Verb("validate", validate.HELP, validate.add_arguments, validate.validate),
    Verb("status", status.HELP, status.add_arguments, status.status),
    Verb("check", check.HELP, check.add_arguments, check.check),
    Verb("render", render.HELP, render.add_arguments, render.render),
    Verb("reduce", reduce.HELP, reduce.add_arguments, reduce.reduce),
    Verb("deferred", deferred.HELP, deferred.add_arguments, deferred.deferred),
    Verb("final", final.HELP, final.add_arguments, final.final),
    Verb("skills", skills.HELP, skills.add_arguments, skills.skills),
    Verb("run", run.HELP, run.add_arguments, run.run),
    Verb("wait", wait.HELP, wait.add_arguments, wait.wait),
    Verb("archive", archive.HELP, archive.add_arguments, archive.archive),
    Verb("cleanup", cleanup.HELP, cleanup.add_arguments, cleanup.cleanup),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlm", description="Declarative MapReduce(+Verify) runner for coding-agent workers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", default=os.environ.get("RLM_CONFIG") or "rlm.yaml",
                        help="the run's rlm.yaml (default: $RLM_CONFIG, as for dodo.py, else rlm.yaml)")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb_parser = sub.add_parser(verb.name, help=verb.help)
        verb_parser.set_defaults(func=verb.func)  # a sub-action (archive verify, ...) sets its own
        verb.add_arguments(verb_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except UserError as exc:
        sys.stderr.write(error_line(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("rlm: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    except Exception:  # a bug, not the user's mistake: say where the details are
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
