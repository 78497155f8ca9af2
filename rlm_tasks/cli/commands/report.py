"""`rlm report [--output PATH]`: the run as one self-contained HTML file (graph, timeline, cost, every report)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rlm_tasks.cli.common import context
from rlm_tasks.phases import report_html

HELP = "write the run's self-contained HTML report (graph, timeline, failures, cost, every report sanitised)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", metavar="PATH",
                        help="where to write it (default: report.html in the run's folder, .rlm/runs/<run_id>/)")


def report(args: argparse.Namespace) -> int:
    ctx = context(args)
    output = Path(os.path.abspath(args.output)) if args.output else None
    written = report_html.write(ctx, output)
    print(f"report: {report_html.shown_path(ctx, written)}")
    return 0
