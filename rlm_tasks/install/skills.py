"""Installing the bundled skills where each agent kind looks for them (its `SKILLS` in rlm_tasks/agents/)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from rlm_tasks import jsonio
from rlm_tasks.agents import KINDS
from rlm_tasks.agents.base import SkillsHome
from rlm_tasks.resources import SKILLS_DIR
from rlm_tasks.state.provenance import sha256_file

SKILL_NAMES = ("map-worker", "reduce-orchestrator")
MARKER = ".rlm-installed.json"  # digest of what we installed, to tell our old copy from a user's edit


class InstallResult:
    """Skill files by outcome. A plain class, as Totals (state/usage.py): every run imports this module."""

    def __init__(self) -> None:
        self.installed: list[str] = []
        self.unchanged: list[str] = []
        self.refused: list[str] = []

    def lines(self) -> list[str]:
        out = [f"installed {p}" for p in self.installed] + [f"up to date {p}" for p in self.unchanged]
        out += [f"refused {p}: changed locally; use --force to overwrite" for p in self.refused]
        return out


# agent kind → where it looks for skills: every kind that reads them
HOMES: dict[str, SkillsHome] = {name: kind.SKILLS for name, kind in KINDS.items() if kind.SKILLS is not None}


def home(kind: str, given: str | None = None, env: dict[str, str] | None = None) -> Path:
    """Where an agent kind looks: `given`, else its variable in `env` (default: this process's), else ~/default."""
    where = HOMES[kind]
    if given:
        return Path(given).expanduser()
    variables: Mapping[str, str] = os.environ if env is None else env
    found = variables.get(where.variable)
    if found:
        return Path(found).expanduser() / where.inside
    return (Path(variables["HOME"]) if variables.get("HOME") else Path.home()) / where.default


def targets(given: dict[str, str | None]) -> list[Path]:
    """The skill directories of the kinds whose home is given; of every kind when none is."""
    named = [kind for kind in HOMES if given.get(kind)]
    return [home(kind, given.get(kind)) / "skills" for kind in named or HOMES]


def missing_warning(kind: str, agent_env: dict[str, str], root: Path) -> str | None:
    """For a kind that reads skills: a warning with the exact install command when the workers lack map-worker."""
    if kind not in HOMES:
        return None
    where = home(kind, env={**os.environ, **agent_env})
    if not where.is_absolute():
        where = root / where  # workers run in the repository root
    if (where / "skills" / "map-worker" / "SKILL.md").is_file():
        return None
    import shlex  # only for the warning

    option = HOMES[kind].option
    return (f"warning: the map-worker skill is not installed where {kind} workers look "
            f"({where}/skills/); install it with `rlm skills install {option} {shlex.quote(str(where))}`")


def install(homes: dict[str, str | None] | None = None, force: bool = False) -> InstallResult:
    """Install into the skills directory of each kind named in `homes` (kind → its home), or of every kind."""
    result = InstallResult()
    for base in targets(homes or {}):
        for name in SKILL_NAMES:
            source = SKILLS_DIR / name / "SKILL.md"
            dest = base / name / "SKILL.md"
            wanted = sha256_file(source)
            present = sha256_file(dest)
            if present == wanted:
                result.unchanged.append(str(dest))
                continue
            installed = (jsonio.read_json(dest.parent / MARKER, default={}) or {}).get("sha256")
            if present is not None and present != installed and not force:
                result.refused.append(str(dest))
                continue
            jsonio.write_bytes_atomic(dest, source.read_bytes())
            jsonio.write_json(dest.parent / MARKER, {"skill": name, "sha256": wanted})
            result.installed.append(str(dest))
    return result
