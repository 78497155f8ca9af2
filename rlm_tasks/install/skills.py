"""Installing the bundled skills where codex and Claude Code look for them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rlm_tasks import jsonio
from rlm_tasks.resources import SKILLS_DIR
from rlm_tasks.state.provenance import sha256_file

SKILL_NAMES = ("map-worker", "reduce-orchestrator")
MARKER = ".rlm-installed.json"  # digest of what we installed, to tell our old copy from a user's edit


@dataclass
class InstallResult:
    installed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"installed {p}" for p in self.installed] + [f"up to date {p}" for p in self.unchanged]
        out += [f"refused {p}: changed locally; use --force to overwrite" for p in self.refused]
        return out


def targets(codex_home: str | None, claude_dir: str | None) -> list[Path]:
    codex = Path(codex_home or os.environ.get("CODEX_HOME") or Path.home() / ".codex").expanduser()
    claude = Path(claude_dir or os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude").expanduser()
    return [codex / "skills", claude / "skills"]


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
