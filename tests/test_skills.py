"""`rlm skills install`: where the skills go, and never clobbering a local edit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rlm_tasks.cli.main import main
from rlm_tasks.config import schema
from rlm_tasks.install import skills

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", skills.SKILL_NAMES)
def test_skill_files_have_frontmatter_codex_and_claude_read(name: str) -> None:
    text = (skills.SKILLS_DIR / name / "SKILL.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["name"] == name
    assert len(front["description"]) > 40


def test_map_worker_skill_names_every_report_section() -> None:
    text = (skills.SKILLS_DIR / "map-worker" / "SKILL.md").read_text()
    for section in (
        "What I did",
        "Key findings",
        "Evidence",
        "Open questions / risks",
        "Deferred opportunities",
        "Contract Compliance",
    ):
        assert f"## {section}" in text
    assert "Self-termination" in text and "Progress notes" in text


def test_install_update_refuse_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    codex, claude = tmp_path / "codex", tmp_path / "claude"
    args = ["skills", "install", "--codex-home", str(codex), "--claude-dir", str(claude)]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert first == [
        f"installed {base}/skills/{name}/SKILL.md" for base in (codex, claude) for name in skills.SKILL_NAMES
    ]
    installed = codex / "skills" / "map-worker" / "SKILL.md"
    assert installed.read_bytes() == (skills.SKILLS_DIR / "map-worker" / "SKILL.md").read_bytes()
    marker = yaml.safe_load((installed.parent / skills.MARKER).read_text())
    assert schema.check("skill_marker", marker) == []

    assert main(args) == 0
    assert all(line.startswith("up to date ") for line in capsys.readouterr().out.splitlines())

    installed.write_text(installed.read_text() + "\nmy local note\n")
    assert main(args) == 1
    out = capsys.readouterr().out
    assert f"refused {installed}: changed locally; use --force to overwrite" in out.splitlines()
    assert installed.read_text().endswith("my local note\n")

    assert main([*args, "--force"]) == 0
    assert f"installed {installed}" in capsys.readouterr().out.splitlines()
    assert not installed.read_text().endswith("my local note\n")


def test_install_replaces_an_older_copy_it_installed(tmp_path: Path) -> None:
    codex, claude = tmp_path / "codex", tmp_path / "claude"
    skills.install(str(codex), str(claude))
    installed = claude / "skills" / "reduce-orchestrator" / "SKILL.md"
    older = "an older version rlm installed\n"
    installed.write_text(older)
    (installed.parent / skills.MARKER).write_text(
        json.dumps({"skill": "reduce-orchestrator", "sha256": skills.sha256_file(installed)})
    )
    result = skills.install(str(codex), str(claude))
    assert result.refused == [] and str(installed) in result.installed


def test_codex_home_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "env-codex"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    result = skills.install()
    assert str(tmp_path / "env-codex" / "skills" / "map-worker" / "SKILL.md") in result.installed
    assert str(tmp_path / "home" / ".claude" / "skills" / "map-worker" / "SKILL.md") in result.installed


def test_claude_config_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    result = skills.install(codex_home=str(tmp_path / "codex"))
    assert str(tmp_path / "claude-config" / "skills" / "map-worker" / "SKILL.md") in result.installed
