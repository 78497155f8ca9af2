"""`rlm` verbs, thin over the modules. Each verb is a function returning an exit code.

Exit codes:
  0  success (check: every report fresh)
  1  something is not done: a task failed, or (check) a report is stale, missing or invalid
  2  the configuration or the command line is invalid
  3  the run is locked by another process; `wait`: still running at --timeout
  130/143  interrupted by SIGINT/SIGTERM
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from rlm_tasks.cli import lifecycle_verbs, run_verbs
from rlm_tasks.config.plan import load_plan
from rlm_tasks.errors import UserError
from rlm_tasks.install import skills
from rlm_tasks.phases import final, reduce
from rlm_tasks.state import cache, planfile, status
from rlm_tasks.state.context import RunContext


def _context(args: argparse.Namespace) -> RunContext:
    return cache.load_context(args.config)  # type: ignore[no-any-return]


def cmd_validate(args: argparse.Namespace) -> int:
    plan = load_plan(args.file or args.config)
    verify = sum(1 for t in plan.tasks if t.mode == "verify")
    shown = args.file or args.config
    print(f"{shown}: valid: run {plan.run_id}, {len(plan.tasks) - verify} map tasks, {verify} verify tasks")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    ctx = _context(args)
    rows = status.collect(ctx)
    if args.json:
        print(json.dumps(status.as_json(ctx, rows), indent=2, sort_keys=True))
        return 0
    print(status.summary_line(ctx, rows))
    now = status.activity_line(ctx, rows)
    if now:
        print(now)
    for line in status.task_lines(ctx, rows, show_all=getattr(args, "all", False)):
        print(line)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    ctx = _context(args)
    rows = status.collect(ctx)
    print(status.summary_line(ctx, rows))
    not_fresh = [(t, f) for t, f in rows if not f.fresh]
    for task, fresh in not_fresh:
        print(status.task_line(task, fresh))
    return 1 if not_fresh else 0


def cmd_render(args: argparse.Namespace) -> int:
    ctx = _context(args)
    from rlm_tasks import jsonio

    planfile.write_plan(ctx)
    for task in ctx.plan.tasks:
        jsonio.write_text_if_changed(ctx.layout.abs(ctx.layout.prompt_rel(task.worker_id)), ctx.prompt_text(task))
    print(
        f"rendered {ctx.layout.contract_rel} and {len(ctx.plan.tasks)} prompts under "
        f"{ctx.layout.artifacts_rel}/prompts/"
    )
    return 0


def cmd_reduce(args: argparse.Namespace) -> int:
    ctx = _context(args)
    if args.stale_seconds is not None:
        ctx = RunContext(dataclasses.replace(ctx.plan, stale_seconds=args.stale_seconds))
    state = reduce.write_reduce_state(ctx)
    print(f"{reduce.reduce_summary(state)}: {reduce.reduce_state_path(ctx)}")
    return 0


def cmd_deferred(args: argparse.Namespace) -> int:
    ctx = _context(args)
    data = reduce.write_deferred(ctx)
    print(f"{reduce.deferred_summary(data)}: {reduce.deferred_path(ctx)}")
    return 0


def cmd_final(args: argparse.Namespace) -> int:
    ctx = _context(args)
    result = final.write(ctx)
    decision = result["termination_decision"]
    verdict = "finish" if decision["should_finish"] else "iterate"
    print(
        f"final: {verdict} ({decision['reason'] or 'no reason given'}): "
        f"{final.final_json_path(ctx)}, {final.final_md_path(ctx)}"
    )
    return 0


def cmd_skills_install(args: argparse.Namespace) -> int:
    results = skills.install(codex_home=args.codex_home, claude_dir=args.claude_dir, force=args.force)
    for line in results.lines():
        print(line)
    return 1 if results.refused else 0


def cmd_run(args: argparse.Namespace) -> int:
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from rlm_tasks.tasks import doit_namespace

    namespace = doit_namespace(args.config)
    doit_args = ["run"]
    if args.jobs is not None:
        doit_args += ["-n", str(args.jobs)]
    doit_args += args.tasks
    try:
        return int(DoitMain(ModuleTaskLoader(namespace)).run(doit_args))
    except SystemExit as exc:  # the run reporter sets the exit code of a run with failures
        return int(exc.code or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlm", description="Declarative MapReduce(+Verify) runner for coding-agent workers."
    )
    parser.add_argument("-c", "--config", default="rlm.yaml", help="the run's rlm.yaml (default: %(default)s)")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("validate", help="check rlm.yaml; every problem as FILE:LINE:COL: key.path: message")
    p.add_argument("file", nargs="?", help="file to validate (default: --config)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("status", help="each task's state (fresh/stale/missing/invalid) and why")
    p.add_argument("--json", action="store_true", help="machine-readable output (schemas/status.schema.json)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("check", help="make -q for CI: exit 0 when every report is fresh, 1 otherwise")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("render", help="write plan.json, the run contract and every prompt without running workers")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("reduce", help="write reduce_state.json: every task's state, report size and age, attempts")
    p.add_argument(
        "--stale-seconds",
        type=float,
        metavar="N",
        help="list in-flight tasks whose report is older than N seconds as stale (default: reduce.stale_seconds)",
    )
    p.set_defaults(func=cmd_reduce)

    p = sub.add_parser("deferred", help="collect the reports' deferred opportunities into deferred.json")
    p.set_defaults(func=cmd_deferred)

    p = sub.add_parser("final", help="write final.json and final.md (needs fresh verify reports and a decision)")
    p.set_defaults(func=cmd_final)

    p = sub.add_parser("skills", help="the map-worker and reduce-orchestrator skills")
    skills_sub = p.add_subparsers(dest="skills_verb", required=True, metavar="ACTION")
    q = skills_sub.add_parser("install", help="copy the skills where codex and Claude Code find them")
    q.add_argument("--codex-home", help="codex home (default: $CODEX_HOME or ~/.codex); skills go to its skills/")
    q.add_argument(
        "--claude-dir",
        help="Claude Code directory (default: $CLAUDE_CONFIG_DIR or ~/.claude); skills go to its skills/",
    )
    q.add_argument("--force", action="store_true", help="overwrite skill files that were changed locally")
    q.set_defaults(func=cmd_skills_install)

    p = sub.add_parser("run", help="run the stale and missing tasks (same as `doit` in the repo root)")
    p.add_argument("-n", "--jobs", type=int, help="workers at once (default: budget.max_inflight)")
    p.add_argument("tasks", nargs="*", help="doit task names, e.g. map:inventory (default: all)")
    p.set_defaults(func=cmd_run)
    run_verbs.register(sub)  # run --detach/--adopt, status --watch/--all, wait
    lifecycle_verbs.register(sub)  # archive [verify|use|release|list], cleanup, run --break-lock
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as exc:
        sys.stderr.write(f"{exc}\n" if exc.exit_code == 2 else f"rlm: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("rlm: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
    except Exception:  # a bug, not the user's mistake: say where the details are
        log = Path(".rlm/rlm-crash.log")
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc(), encoding="utf-8")
            where = f"details in {log}"
        except OSError:
            where = "no crash log could be written"
        sys.stderr.write(f"rlm: unexpected error ({where}); please report it\n")
        return 70


def entry() -> None:
    raise SystemExit(main())
