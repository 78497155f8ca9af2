"""`rlm render`: write plan.json, the run contract and every prompt, running no worker."""

from __future__ import annotations

import argparse

from rlm_tasks import jsonio
from rlm_tasks.cli.common import context
from rlm_tasks.state import planfile

HELP = "write plan.json, the run contract and every prompt without running workers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def render(args: argparse.Namespace) -> int:
    ctx = context(args)
    planfile.write_plan(ctx)
    for task in ctx.plan.tasks:
        jsonio.write_text_if_changed(ctx.layout.abs(ctx.layout.prompt_rel(task.worker_id)), ctx.prompt_text(task))
    print(
        f"rendered {ctx.layout.contract_rel} and {len(ctx.plan.tasks)} prompts under "
        f"{ctx.layout.artifacts_rel}/prompts/"
    )
    for name, ids in ctx.plan.fanouts:  # the expansion itself is in plan.json
        print(f"foreach {name}: {len(ids)} tasks; plan.json lists them: {ctx.layout.run_dir_rel}/plan.json")
    return 0
