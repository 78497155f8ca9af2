"""Rendering: the run contract and worker prompts (Jinja2, StrictUndefined, templates_dir override)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import RUN_DIR, Repo

from rlm_tasks.config.plan import load_plan
from rlm_tasks.render.jinja import TemplateError, render_prompt
from rlm_tasks.state.context import RunContext

CONTRACT = f"{RUN_DIR}/artifacts/context/run_contract.md"
ENVELOPE_KEYS = {"run_id", "worker_id", "mode", "granularity", "compute_tier", "goal", "report_path", "hint_paths"}


def config(**extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "run_id": "t",
        "goal": "Understand the parser.",
        "hint_paths": ["README.md", "docs/"],
        "contract": {
            "scope": {"include": ["src/"], "avoid": [".git/"]},
            "invariants": ["Never edit generated files."],
            "sequence": ["Read the contract.", "Write the report."],
            "verification": {"interpreter": "python3", "commands": ["python3 -m pytest -q"]},
            "failure_policy": "Write the report anyway.",
        },
        "tasks": [
            {"id": "lexer", "goal": "Measure the lexer.", "granularity": "micro", "inputs": ["src/lexer.py"],
             "context_paths": ["docs/lexing.md"]},
            {"id": "parser", "goal": "Measure the parser.", "compute_tier": "heavy", "depends_on": ["lexer"],
             "report_path": "notes/parser.md"},
        ],
        "verify": [{"id": "check", "goal": "Re-measure.", "depends_on": ["lexer", "parser"]}],
        **extra,
    }


@pytest.fixture(autouse=True)
def _inputs(tmp_path: Path) -> None:
    """The files config() lists under inputs: (an input that does not exist is a config error)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src/lexer.py").write_text("x = 1\n")


def rendered(repo: Repo, worker_id: str) -> str:
    return repo.path(f"{RUN_DIR}/artifacts/prompts/{worker_id}.md").read_text(encoding="utf-8")


def envelope(prompt: str) -> dict[str, Any]:
    blocks = re.findall(r"^```json\n(.*?)\n```$", prompt, re.S | re.M)
    assert len(blocks) == 1, prompt
    data: dict[str, Any] = json.loads(blocks[0])
    return data


@pytest.fixture
def rendered_repo(repo: Repo) -> Repo:
    repo.write(config())
    result = repo.rlm("render")
    assert (result.code, result.err) == (0, "")
    assert result.out == f"rendered {CONTRACT} and 3 prompts under {RUN_DIR}/artifacts/prompts/\n"
    return repo


def test_prompt_carries_the_skill_line_and_token(rendered_repo: Repo) -> None:
    prompt = rendered(rendered_repo, "lexer")
    lines = prompt.splitlines()
    assert "Use the map-worker skill." in lines
    assert "$map-worker" in lines


def test_prompt_names_the_contract_to_read_first_and_the_report_path(rendered_repo: Repo) -> None:
    prompt = rendered(rendered_repo, "parser")
    assert f"Read the run contract first: `{CONTRACT}`. It binds everything below." in prompt.splitlines()
    assert "notes/parser.md" in prompt
    assert "Measure the parser." in prompt
    assert "Understand the parser." in prompt  # the run goal


def test_prompt_envelope_is_json_with_the_required_keys(rendered_repo: Repo) -> None:
    env = envelope(rendered(rendered_repo, "lexer"))
    assert set(env) >= ENVELOPE_KEYS
    assert {k: env[k] for k in ENVELOPE_KEYS} == {
        "run_id": "t",
        "worker_id": "lexer",
        "mode": "map",
        "granularity": "micro",
        "compute_tier": "standard",
        "goal": "Measure the lexer.",
        "report_path": f"{RUN_DIR}/artifacts/reports/lexer.md",
        "hint_paths": [RUN_DIR, CONTRACT, "README.md", "docs/", "docs/lexing.md"],
    }
    assert env["inputs"] == ["src/lexer.py"]


def test_dependent_and_verify_prompts_list_the_reports_to_read(rendered_repo: Repo) -> None:
    parser = envelope(rendered(rendered_repo, "parser"))
    assert (parser["mode"], parser["compute_tier"], parser["report_path"]) == ("map", "heavy", "notes/parser.md")
    assert parser["input_reports"] == [f"{RUN_DIR}/artifacts/reports/lexer.md"]
    check_prompt = rendered(rendered_repo, "check")
    check = envelope(check_prompt)
    assert (check["mode"], check["worker_id"]) == ("verify", "check")
    assert check["input_reports"] == [f"{RUN_DIR}/artifacts/reports/lexer.md", "notes/parser.md"]
    assert f"- `{RUN_DIR}/artifacts/reports/lexer.md`" in check_prompt.splitlines()
    assert "Use the map-worker skill." in check_prompt.splitlines()


def test_contract_is_rendered_from_the_contract_section(rendered_repo: Repo) -> None:
    contract = rendered_repo.path(CONTRACT).read_text(encoding="utf-8")
    lines = contract.splitlines()
    assert lines[0] == "# Run contract: t"
    for expected in ("Understand the parser.", "- `src/`", "- `.git/`", "- Never edit generated files.",
                     "1. Read the contract.", "2. Write the report.", "Interpreter: `python3`",
                     "- `python3 -m pytest -q`", "Write the report anyway."):
        assert expected in lines, expected


def test_rendering_twice_gives_the_same_bytes(rendered_repo: Repo) -> None:
    before = rendered(rendered_repo, "lexer")
    assert rendered_repo.rlm("render").code == 0
    assert rendered(rendered_repo, "lexer") == before


def test_goal_with_jinja_syntax_is_not_evaluated(repo: Repo) -> None:
    data = config()
    data["tasks"][0]["goal"] = "Explain {{ run_id }} and {% raw %} literally."
    repo.write(data)
    assert repo.rlm("render").code == 0
    assert "Explain {{ run_id }} and {% raw %} literally." in rendered(repo, "lexer")
    assert envelope(rendered(repo, "lexer"))["goal"] == "Explain {{ run_id }} and {% raw %} literally."


MANDATORY = "Use the map-worker skill.\n$map-worker\n{{ contract_path }}\n"  # what every prompt keeps


def test_templates_dir_overrides_the_prompt_and_keeps_the_builtin_contract(repo: Repo) -> None:
    (repo.root / "my-templates").mkdir()
    (repo.root / "my-templates" / "worker_prompt.md.j2").write_text(
        MANDATORY + "CUSTOM {{ worker_id }} -> {{ report_path }} ({{ model }}, {{ effort }})\n")
    repo.write(config(templates_dir="my-templates"))
    result = repo.rlm("render")
    assert (result.code, result.err) == (0, "")
    head = f"Use the map-worker skill.\n$map-worker\n{CONTRACT}\n"
    assert rendered(repo, "lexer") == (f"{head}CUSTOM lexer -> {RUN_DIR}/artifacts/reports/lexer.md "
                                       "(gpt-5.1-codex-mini, medium)\n")
    assert rendered(repo, "parser") == f"{head}CUSTOM parser -> notes/parser.md (gpt-5.2-codex, xhigh)\n"
    assert repo.path(CONTRACT).read_text(encoding="utf-8").startswith("# Run contract: t\n")


def test_templates_dir_overrides_the_contract(repo: Repo) -> None:
    (repo.root / "tpl").mkdir()
    (repo.root / "tpl" / "run_contract.md.j2").write_text("Contract of {{ run_id }}: {{ invariants | join('; ') }}\n")
    repo.write(config(templates_dir="tpl"))
    assert repo.rlm("render").code == 0
    assert repo.path(CONTRACT).read_text(encoding="utf-8") == "Contract of t: Never edit generated files.\n"



def test_a_template_linked_out_of_the_repository_is_never_read(repo: Repo) -> None:
    (repo.root / "tpl").mkdir()
    os.symlink("/etc/hostname", repo.root / "tpl" / "run_contract.md.j2")  # it was rendered into the contract
    repo.write(config(templates_dir="tpl"))
    result = repo.rlm("render")
    assert (result.code, result.out) == (2, "")
    assert result.err == (f"tpl/run_contract.md.j2 resolves outside the repository (to "
                          f"{os.path.realpath('/etc/hostname')}); not read\n")
    assert not repo.path(CONTRACT).exists()


@pytest.mark.parametrize(("name", "text", "error"), [
    ("worker_prompt.md.j2", "Hello {{ no_such_var }}\n",
     "worker_prompt.md.j2: undefined variable: 'no_such_var' is undefined"),
    ("run_contract.md.j2", "x\n{% if %}\n",
     "{tpl}/run_contract.md.j2:2: template syntax error: Expected an expression, got 'end of statement block'"),
    ("final.md.j2", "{% for %}\n", "{tpl}/final.md.j2:1: template syntax error: Expected an expression, "
                                   "got 'end of statement block'"),
])
def test_rlm_validate_renders_your_templates(repo: Repo, name: str, text: str, error: str) -> None:
    (repo.root / "tpl").mkdir()
    (repo.root / "tpl" / name).write_text(text)
    repo.write(config(templates_dir="tpl"))
    result = repo.rlm("validate")  # it said "valid", and the run failed later
    assert (result.code, result.out, result.err) == (2, "", error.format(tpl=repo.root / "tpl") + "\n")

def test_undefined_variable_in_a_prompt_template_names_template_and_variable(repo: Repo) -> None:
    (repo.root / "tpl").mkdir()
    (repo.root / "tpl" / "worker_prompt.md.j2").write_text("Hello {{ worker_id }}, {{ no_such_var }}\n")
    repo.write(config(templates_dir="tpl"))
    result = repo.rlm("render")
    assert (result.code, result.out) == (2, "")
    assert result.err == "worker_prompt.md.j2: undefined variable: 'no_such_var' is undefined\n"


def test_undefined_variable_in_a_contract_template(repo: Repo) -> None:
    (repo.root / "tpl").mkdir()
    (repo.root / "tpl" / "run_contract.md.j2").write_text(
        "{{ run_id }}\n{% for x in missing_list %}{{ x }}{% endfor %}\n")
    repo.write(config(templates_dir="tpl"))
    result = repo.rlm("render")
    assert (result.code, result.out) == (2, "")
    assert result.err == "run_contract.md.j2: undefined variable: 'missing_list' is undefined\n"


def test_template_syntax_error_names_file_and_line(repo: Repo) -> None:
    (repo.root / "tpl").mkdir()
    template = repo.root / "tpl" / "worker_prompt.md.j2"
    template.write_text("line one\n{% if %}\n")
    repo.write(config(templates_dir="tpl"))
    result = repo.rlm("render")
    assert (result.code, result.out) == (2, "")
    assert result.err == (f"{template.resolve()}:2: template syntax error: "
                          "Expected an expression, got 'end of statement block'\n")


def test_render_prompt_raises_template_error(repo: Repo) -> None:
    (repo.root / "tpl").mkdir()
    (repo.root / "tpl" / "worker_prompt.md.j2").write_text("{{ task.nope }}\n")
    repo.write(config(templates_dir="tpl"))
    ctx = RunContext(load_plan("rlm.yaml"))
    with pytest.raises(TemplateError) as caught:
        render_prompt(ctx.plan, ctx.plan.tasks[0], ctx.layout)
    assert str(caught.value).startswith("worker_prompt.md.j2: undefined variable: ")
    assert "nope" in str(caught.value)
    assert caught.value.exit_code == 2


def test_missing_templates_dir_is_a_config_error(repo: Repo) -> None:
    text = repo.write(config(templates_dir="nowhere")).read_text()
    line = text.splitlines().index("templates_dir: nowhere") + 1
    result = repo.rlm("validate")
    assert (result.code, result.out) == (2, "")
    assert result.err == f"rlm.yaml:{line}:16: templates_dir: directory 'nowhere' does not exist\n"


@pytest.mark.slow
def test_doit_with_an_undefined_template_variable_exits_2_without_traceback(repo: Repo) -> None:
    """Like a config error: one line naming template and variable, exit 2, no worker starts."""
    (repo.root / "tpl").mkdir()
    (repo.root / "tpl" / "worker_prompt.md.j2").write_text("Hello {{ no_such_var }}\n")
    repo.write(config(templates_dir="tpl"))
    (repo.root / "dodo.py").write_text((Path(__file__).resolve().parent.parent / "dodo.py").read_text())
    result = repo.doit_cli()
    assert "Traceback" not in result.err
    assert (result.code, result.err.splitlines()) == (
        2, ["worker_prompt.md.j2: undefined variable: 'no_such_var' is undefined"])
