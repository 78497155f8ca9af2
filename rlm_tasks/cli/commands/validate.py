"""`rlm validate [FILE]`: check rlm.yaml and say how many tasks it plans."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlm_tasks.config import yamlpos
from rlm_tasks.config.advisories import contract_warnings, evidence_problems
from rlm_tasks.config.plan import load_plan
from rlm_tasks.config.records import ConfigError
from rlm_tasks.install import init as starter
from rlm_tasks.layout import RunLayout
from rlm_tasks.render import jinja
from rlm_tasks.state import planfile
from rlm_tasks.state.context import RunContext

HELP = "check rlm.yaml; every problem as FILE:LINE:COL: key.path: message"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="file to validate (default: --config)")


def validate(args: argparse.Namespace) -> int:
    shown = args.file or args.config
    plan = load_plan(shown)
    missing = evidence_problems(plan)
    shared = planfile.claimed_elsewhere(RunContext(plan))  # another config file's run, by the same run_id
    if shared:
        pos = yamlpos.load(Path(shown).read_text(encoding="utf-8")).position(("run_id",))
        missing.append(f"{shown}:{pos.line}:{pos.column}: run_id: {shared}")
    if missing:
        raise ConfigError(missing)
    layout = RunLayout(plan.root, plan.run_id)
    if plan.templates_dir:  # your templates fail here, not in the middle of a run
        jinja.check_templates(plan, layout)
    jinja.check_commands(plan, layout)
    for line in plan.warnings:
        print(line)
    verify = sum(1 for t in plan.tasks if t.mode == "verify")
    print(f"{shown}: valid: run {plan.run_id}, {len(plan.tasks) - verify} map tasks, {verify} verify tasks")
    outdated = starter.outdated_schema_copy(plan.root)
    if outdated:
        print(f"note: {outdated} differs from this rlm's schema; `rlm init --upgrade` refreshes it")
    for line in contract_warnings(plan, Path(shown).read_text(encoding="utf-8"), shown):
        print(line, file=sys.stderr)  # still exit 0: a run without invariants or verification is allowed, only weaker
    return 0
