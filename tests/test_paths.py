"""Paths: everything stays inside the repository (symlinks followed), report_path names a file the
run may own, inputs exist, watch globs stay out of the machinery and are bounded."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from conftest import RUN_DIR, Repo

HEADER = "version: 1\nrun_id: t\ngoal: g\n"


def invalid(repo: Repo, text: str) -> list[str]:
    repo.write(HEADER + textwrap.dedent(text))
    result = repo.rlm("validate")
    assert (result.code, result.out) == (2, ""), result.err
    return result.err.splitlines()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """`out` in the repository links to /etc, outside it (tests write nothing outside tmp_path)."""
    there = Path(os.path.realpath("/etc"))
    os.symlink(there, tmp_path / "out")
    return there


def test_symlinked_directories_pointing_outside_are_refused(repo: Repo, outside: Path) -> None:
    assert invalid(repo, """\
        hint_paths: [out/passwd]
        tasks:
          - {id: a, goal: A, report_path: out/a.md, inputs: [out/passwd], context_paths: [out],
             watch: ["out/*.md"], owns: ["out/**"]}
        decision: {conclusions: [{text: c, evidence: [out/passwd]}]}
        """) == [
        f"rlm.yaml:4:14: hint_paths[0]: hint_paths 'out/passwd' resolves outside the repository "
        f"(through a symlink, to {outside}/passwd)",
        f"rlm.yaml:6:35: tasks[0].report_path: report_path 'out/a.md' resolves outside the repository "
        f"(through a symlink, to {outside}/a.md)",
        f"rlm.yaml:6:54: tasks[0].inputs[0]: inputs 'out/passwd' resolves outside the repository "
        f"(through a symlink, to {outside}/passwd)",
        f"rlm.yaml:6:83: tasks[0].context_paths[0]: context_paths 'out' resolves outside the repository "
        f"(through a symlink, to {outside})",
        f"rlm.yaml:7:14: tasks[0].watch[0]: watch 'out/*.md' resolves outside the repository "
        f"(through a symlink, to {outside})",
        f"rlm.yaml:7:34: tasks[0].owns[0]: owns 'out/**' resolves outside the repository "
        f"(through a symlink, to {outside})",
        f"rlm.yaml:8:47: decision.conclusions[0].evidence[0]: evidence 'out/passwd' resolves outside the "
        f"repository (through a symlink, to {outside}/passwd)"]


def test_templates_dir_through_a_link_outside_is_refused(repo: Repo, outside: Path) -> None:
    assert invalid(repo, "templates_dir: out\ntasks: [{id: a, goal: A}]\n") == [
        f"rlm.yaml:4:16: templates_dir: templates_dir 'out' resolves outside the repository "
        f"(through a symlink, to {outside})"]


@pytest.mark.parametrize(("report_path", "message"), [
    ("notes/", "report_path 'notes/' names a directory"),
    ("docs", "report_path 'docs' names a directory"),
    (".git/x.md", "report_path '.git/x.md' is inside .git/"),
    ("sub/.git/config", "report_path 'sub/.git/config' is inside .git/"),
    (f"{RUN_DIR}/provenance.json", f"report_path '{RUN_DIR}/provenance.json' is inside the run's machinery (.rlm/); "
                                   f"only {RUN_DIR}/artifacts/reports/ is for reports"),
    (".rlm/locks/t.lock", f"report_path '.rlm/locks/t.lock' is inside the run's machinery (.rlm/); "
                          f"only {RUN_DIR}/artifacts/reports/ is for reports"),
    ("rlm.yaml", "report_path 'rlm.yaml' is the run's configuration"),
    ("./dodo.py", "report_path './dodo.py' is the run's dodo file"),
    ("doit.cfg", "report_path 'doit.cfg' is doit's configuration"),
    ("sub/../pyproject.toml", "report_path 'sub/../pyproject.toml' is doit's configuration"),
])
def test_report_path_rules(repo: Repo, report_path: str, message: str) -> None:
    repo.write("doc\n", "docs/a.md")
    assert invalid(repo, f"tasks: [{{id: a, goal: A, report_path: '{report_path}'}}]\n") == [
        f"rlm.yaml:4:39: tasks[0].report_path: {message}"]



@pytest.mark.parametrize(("link", "target", "report_path", "message"), [
    ("gitlink", ".git", "gitlink/x.md", "report_path 'gitlink/x.md' (through a symlink, '.git/x.md') is inside .git/"),
    ("cfg.md", "rlm.yaml", "cfg.md", "report_path 'cfg.md' (through a symlink, 'rlm.yaml') is the run's configuration"),
    ("local", ".rlm/local", "local/x.md", "report_path 'local/x.md' (through a symlink, '.rlm/local/x.md') "
                                          f"is inside the run's machinery (.rlm/); only {RUN_DIR}/artifacts/reports/ "
                                          "is for reports"),
])
def test_report_path_through_a_link_inside_the_repository_is_judged_by_its_target(
        repo: Repo, link: str, target: str, report_path: str, message: str) -> None:
    (repo.root / ".rlm" / "local").mkdir(parents=True, exist_ok=True)
    os.symlink(target, repo.root / link)
    assert invalid(repo, f"tasks: [{{id: a, goal: A, report_path: '{report_path}'}}]\n") == [
        f"rlm.yaml:4:39: tasks[0].report_path: {message}"]


def test_a_link_to_another_tasks_report_is_that_report(repo: Repo) -> None:
    os.symlink(f"{RUN_DIR}/artifacts/reports/b.md", repo.root / "alias.md")
    assert invalid(repo, "tasks: [{id: a, goal: A, report_path: alias.md}, {id: b, goal: B}]\n") == [
        "rlm.yaml:4:55: tasks[1].id: report_path '.rlm/runs/t/artifacts/reports/b.md' is also the report of task 'a'"]


def test_nul_in_a_path_is_one_error_not_a_crash(repo: Repo) -> None:
    assert invalid(repo, 'tasks: [{id: a, goal: A, report_path: "a\\0.md", inputs: ["b\\0"]}]\n') == [
        "rlm.yaml:4:39: tasks[0].report_path: contains a NUL character",
        "rlm.yaml:4:58: tasks[0].inputs[0]: contains a NUL character"]


def test_a_path_with_a_line_break_cannot_forge_a_status_line(repo: Repo) -> None:
    repo.write("x\n", "notes.md")
    config = ('hint_paths: ["notes.md\\n"]\n'
              'tasks: [{id: a, goal: A, report_path: "a.md\\nfresh    map:b", inputs: ["notes.md\\t"]}]\n')
    assert invalid(repo, config) == [
        "rlm.yaml:4:14: hint_paths[0]: hint_paths 'notes.md\\n' contains a control character (a line break, tab, ...)",
        "rlm.yaml:5:39: tasks[0].report_path: report_path 'a.md\\nfresh    map:b' contains a control character "
        "(a line break, tab, ...)",
        "rlm.yaml:5:72: tasks[0].inputs[0]: inputs 'notes.md\\t' contains a control character (a line break, tab, ...)"]



def test_a_report_inside_templates_dir_is_refused(repo: Repo) -> None:
    (repo.root / "tpl").mkdir()  # a worker writing tpl/worker_prompt.md.j2 would run Jinja in the orchestrator
    assert invalid(repo, "templates_dir: tpl\ntasks: [{id: a, goal: A, report_path: tpl/worker_prompt.md.j2}]\n") == [
        "rlm.yaml:5:39: tasks[0].report_path: report_path 'tpl/worker_prompt.md.j2' is inside templates_dir 'tpl': "
        "a worker's report would become a template"]


def test_every_line_separator_python_knows_stays_inside_one_error_line(repo: Repo) -> None:
    # the fuzz suite found it: U+2028 and U+0085 split a problem over lines for str.splitlines()
    assert invalid(repo, 'tasks: [{id: a, goal: A}]\nbudget: {"\\u2028": 1, "\\x85": 2}\n') == [
        "rlm.yaml:5:10: budget.\\u2028: unknown key '\\u2028'",
        "rlm.yaml:5:23: budget.\\x85: unknown key '\\x85'"]

def test_report_path_in_the_run_report_folder_is_fine(repo: Repo) -> None:
    repo.write(HEADER + f"tasks: [{{id: a, goal: A, report_path: {RUN_DIR}/artifacts/reports/other.md}}]\n")
    assert repo.rlm("validate").code == 0


def test_missing_inputs_and_globs_in_inputs(repo: Repo) -> None:
    repo.write("x\n", "src/parser.py")
    assert invalid(repo, """\
        tasks: [{id: a, goal: A, inputs: [src/parsr.py, "src/*.py", nowhere/x.py]}]
        """) == [
        "rlm.yaml:4:35: tasks[0].inputs[0]: input 'src/parsr.py' does not exist (did you mean 'src/parser.py'?)",
        "rlm.yaml:4:49: tasks[0].inputs[1]: inputs entry 'src/*.py' is a glob; list it under watch: "
        "(globs are tracked there)",
        "rlm.yaml:4:61: tasks[0].inputs[2]: input 'nowhere/x.py' does not exist"]


def test_watch_glob_matching_nothing_is_a_warning(repo: Repo) -> None:
    repo.write(HEADER + 'tasks: [{id: a, goal: A, watch: ["docs/*.md"]}]\n')
    result = repo.rlm("validate")
    # stderr has only the contract's warnings (no invariants, no verification)
    assert (result.code, [line for line in result.err.splitlines() if ": contract." not in line]) == (0, [])
    assert result.lines == ["rlm.yaml:4:34: tasks[0].watch[0]: warning: glob 'docs/*.md' matches no file",
                            "rlm.yaml: valid: run t, 1 map tasks, 0 verify tasks"]


def test_watch_glob_over_the_cap_is_refused_with_the_count(repo: Repo) -> None:
    for i in range(4):
        repo.write("x\n", f"src/{i}.py")
    assert invalid(repo, 'budget: {max_watch_files: 3}\ntasks: [{id: a, goal: A, watch: ["src/**"]}]\n') == [
        "rlm.yaml:5:34: tasks[0].watch[0]: glob 'src/**' matches 4 files, more than budget.max_watch_files = 3; "
        "narrow it"]


def test_watch_everything_converges(repo: Repo) -> None:
    repo.write("x\n", "src/a.py")
    # every .md: the reports, prompts and contract would be among them (the fake agent's own log is .jsonl)
    watch = ["**/*.md", "**/*.py"]
    repo.write_codex([{"id": "a", "goal": "A", "watch": watch},
                      {"id": "b", "goal": "B", "watch": watch, "report_path": "notes/b.md"}])
    first = repo.doit()
    assert first.code == 0, first.out
    second = repo.doit()
    assert second.code == 0, second.out
    assert repo.ran() == ["a", "b"]  # the second run started nobody: its own reports and .rlm/ are not watched
    (repo.root / "src/a.py").write_text("y\n")
    assert repo.rlm("check").code == 1



def test_links_and_fifos_where_files_are_watched(repo: Repo) -> None:
    repo.write("x\n", "src/a.py")
    os.symlink("loop-b", repo.root / "src/loop-a")  # stat fails with ELOOP: rlm status and doit crashed
    os.symlink("loop-a", repo.root / "src/loop-b")
    os.symlink("nowhere", repo.root / "src/dangling")
    os.mkfifo(repo.root / "src/pipe")  # hashing it would block for ever
    repo.write_codex([{"id": "a", "goal": "A", "watch": ["src/*"], "inputs": ["src"]}])
    assert repo.doit().code == 0
    assert repo.rlm("status").lines[0] == "run t: 1 tasks: 1 fresh, 0 stale, 0 missing, 0 invalid"
    assert repo.doit().code == 0 and repo.ran() == ["a"]
    assert invalid(repo, 'tasks: [{id: a, goal: A, inputs: [src/pipe, src/loop-a, src/dangling]}]\n') == [
        "rlm.yaml:4:35: tasks[0].inputs[0]: inputs entry 'src/pipe' is not a regular file or a directory",
        "rlm.yaml:4:45: tasks[0].inputs[1]: inputs entry 'src/loop-a' is not a regular file or a directory",
        "rlm.yaml:4:57: tasks[0].inputs[2]: inputs entry 'src/dangling' is not a regular file or a directory"]

def test_an_input_directory_tracks_every_file_under_it(repo: Repo) -> None:
    repo.write("x\n", "data/deep/one.txt")
    repo.write_codex([{"id": "a", "goal": "A", "inputs": ["data"]}])
    assert repo.doit().code == 0
    assert repo.rlm("check").code == 0
    (repo.root / "data/deep/one.txt").write_text("changed\n")
    result = repo.rlm("check")
    assert result.code == 1
    assert "input_changed" in result.out
