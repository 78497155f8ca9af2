"""`rlm final`: render the decision into final.json and final.md."""

from __future__ import annotations

import argparse

from rlm_tasks.cli.common import context
from rlm_tasks.phases import final as final_phase

HELP = "write final.json and final.md (needs fresh verify reports and a decision)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def final(args: argparse.Namespace) -> int:
    ctx = context(args)
    result = final_phase.write(ctx)
    decision = result["termination_decision"]
    verdict = "finish" if decision["should_finish"] else "iterate"
    print(
        f"final: {verdict} ({decision['reason'] or 'no reason given'}): "
        f"{final_phase.final_json_path(ctx)}, {final_phase.final_md_path(ctx)}"
    )
    return 0
