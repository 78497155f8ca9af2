"""Templates never run code: every template from rlm.yaml, a templates_dir or a worker-writable value renders
in Jinja's immutable sandbox, and a refusal is one line naming where (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Repo

PAYLOADS = [
    "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}",
    "{{ lipsum.__globals__['os'].system('touch PWNED') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ joiner.__init__.__globals__.os.popen('touch PWNED').read() }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
]


def _config(goal: str, **extra: Any) -> dict[str, Any]:
    return {"version": 1, "run_id": "t", "goal": "g",
            "agent": {"kind": "command", "command": ["true"]},
            "tasks": [{"id": "a", "goal": goal}], **extra}


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("verb", [("validate",), ("check",), ("status",)])
def test_foreach_field_runs_no_code(repo: Repo, tmp_path: Path, payload: str, verb: tuple[str, ...]) -> None:
    repo.write({"version": 1, "run_id": "t", "goal": "g", "agent": {"kind": "command", "command": ["true"]},
                "tasks": [{"foreach": {"items": ["x"]}, "id": "a-{{ item }}", "goal": payload}]})
    result = repo.rlm_cli(*verb)
    assert not (tmp_path / "PWNED").exists()
    assert result.code == 2, result
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "rlm.yaml:" in result.err and "sandbox" in result.err


@pytest.mark.parametrize("payload", PAYLOADS[:2])
def test_templates_dir_runs_no_code(repo: Repo, tmp_path: Path, payload: str) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl/worker_prompt.md.j2").write_text(f"line one\n\n{payload}\n", encoding="utf-8")
    repo.write(_config("plain", templates_dir="tpl"))
    for verb in ("validate", "check"):
        result = repo.rlm_cli(verb)
        assert not (tmp_path / "PWNED").exists()
        assert result.code == 2, result
        assert result.err.strip() == result.err.strip().splitlines()[0]
        assert result.err.startswith("tpl/worker_prompt.md.j2:3: template refused by the sandbox"), result.err


@pytest.mark.parametrize("payload", PAYLOADS[:2])
def test_agent_command_item_runs_no_code(repo: Repo, tmp_path: Path, payload: str) -> None:
    data = _config("plain")
    data["agent"]["command"] = ["echo", payload]
    repo.write(data)
    result = repo.rlm_cli("validate")
    assert result.code == 2, result
    assert result.err.startswith("rlm.yaml: agent.command[1]: "), result.err
    assert "template refused by the sandbox" in result.err and len(result.err.strip().splitlines()) == 1
    result = repo.rlm_cli("check")  # does not render the argv at all
    assert not (tmp_path / "PWNED").exists()
    assert "Traceback" not in result.err
    result = repo.doit_cli()
    assert not (tmp_path / "PWNED").exists()
    assert result.code != 0
    assert "Traceback" not in result.err + result.out


def test_template_cannot_build_a_huge_value(repo: Repo) -> None:
    repo.write({"version": 1, "run_id": "t", "goal": "g", "agent": {"kind": "command", "command": ["true"]},
                "tasks": [{"foreach": {"items": ["x"]}, "id": "a-{{ item }}", "goal": "{{ 'a' * 10**11 }}"}]})
    result = repo.rlm_cli("validate")
    assert result.code == 2, result
    assert "sandbox" in result.err and len(result.err.strip().splitlines()) == 1


def test_sandbox_leaves_ordinary_templates_alone(repo: Repo) -> None:
    repo.write({"version": 1, "run_id": "t", "goal": "g", "agent": {"kind": "command", "command": ["true"]},
                "tasks": [{"foreach": {"items": ["x", "y"]}, "id": "a-{{ item }}",
                           "goal": "{{ item|upper }} {{ [1, 2]|join(',') }} {{ 2 * 3 }} {{ 'ab' * 2 }}"}]})
    result = repo.rlm_cli("validate")
    assert result.code == 0, result
