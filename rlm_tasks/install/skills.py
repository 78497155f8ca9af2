"""Installing the bundled skills where codex and Claude Code look for them."""

from __future__ import annotations

import os
from pathlib import Path

from rlm_tasks import jsonio
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


# agent kind → (the variable naming its home, the default home, the `rlm skills install` option)
HOMES = {"codex": ("CODEX_HOME", ".codex", "--codex-home"), "claude": ("CLAUDE_CONFIG_DIR", ".claude", "--claude-dir")}


def home(kind: str, given: str | None = None, env: dict[str, str] | None = None) -> Path:
    """Where an agent kind looks: `given`, else its variable in `env` (default: this process's), else ~/.kind."""
    variable, default, _ = HOMES[kind]
    found = given or (os.environ if env is None else env).get(variable)
    return Path(found).expanduser() if found else Path.home() / default


def targets(codex_home: str | None, claude_dir: str | None) -> list[Path]:
    """Both agents' skill directories; naming only one agent's directory installs for that agent only."""
    kinds = ["codex"] if codex_home and not claude_dir else ["claude"] if claude_dir and not codex_home else list(HOMES)
    return [home(kind, codex_home if kind == "codex" else claude_dir) / "skills" for kind in kinds]


def missing_warning(kind: str, agent_env: dict[str, str], root: Path) -> str | None:
    """For a codex or claude run: a warning with the exact install command when the workers lack map-worker."""
    if kind not in HOMES:
        return None
    where = home(kind, env={**os.environ, **agent_env})
    if not where.is_absolute():
        where = root / where  # workers run in the repository root
    if (where / "skills" / "map-worker" / "SKILL.md").is_file():
        return None
    import shlex  # only for the warning

    option = HOMES[kind][2]
    return (f"warning: the map-worker skill is not installed where {kind} workers look "
            f"({where}/skills/); install it with `rlm skills install {option} {shlex.quote(str(where))}`")


def install(codex_home: str | None = None, claude_dir: str | None = None, force: bool = False) -> InstallResult:
    result = InstallResult()
    for base in targets(codex_home, claude_dir):
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
