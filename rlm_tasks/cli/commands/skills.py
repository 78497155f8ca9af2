"""`rlm skills install`: copy the map-worker and reduce-orchestrator skills where the agents find them."""

from __future__ import annotations

import argparse

from rlm_tasks.install import skills as skill_files

HELP = "the map-worker and reduce-orchestrator skills"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="skills_verb", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="copy the skills where codex and Claude Code find them")
    install.add_argument("--codex-home", help="codex home (default: $CODEX_HOME or ~/.codex); skills go to its skills/")
    install.add_argument(
        "--claude-dir",
        help="Claude Code directory (default: $CLAUDE_CONFIG_DIR or ~/.claude); skills go to its skills/",
    )
    install.add_argument("--force", action="store_true", help="overwrite skill files that were changed locally")


def skills(args: argparse.Namespace) -> int:
    results = skill_files.install(codex_home=args.codex_home, claude_dir=args.claude_dir, force=args.force)
    for line in results.lines():
        print(line)
    return 1 if results.refused else 0
