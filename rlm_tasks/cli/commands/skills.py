"""`rlm skills install`: copy the map-worker and reduce-orchestrator skills where the agents find them."""

from __future__ import annotations

import argparse

from rlm_tasks.install import skills as skill_files

HELP = "the map-worker and reduce-orchestrator skills"


def _dest(kind: str) -> str:
    return skill_files.HOMES[kind].option.lstrip("-").replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="skills_verb", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="copy the skills where each agent kind finds them")
    for kind, where in skill_files.HOMES.items():
        default = f"${where.variable}/{where.inside}" if where.inside else f"${where.variable}"
        install.add_argument(where.option, dest=_dest(kind),
                             help=f"{kind}'s directory (default: {default} or ~/{where.default}); skills go to its "
                                  "skills/. Naming any of these installs for those kinds only")
    install.add_argument("--force", action="store_true", help="overwrite skill files that were changed locally")


def skills(args: argparse.Namespace) -> int:
    homes = {kind: getattr(args, _dest(kind)) for kind in skill_files.HOMES}
    results = skill_files.install(homes, force=args.force)
    for line in results.lines():
        print(line)
    return 1 if results.refused else 0
