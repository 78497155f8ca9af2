"""Issue 10, paths: everything stays inside the repository (symlinks followed), report_path names a file the
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
])
def test_report_path_rules(repo: Repo, report_path: str, message: str) -> None:
    repo.write("doc\n", "docs/a.md")
    assert invalid(repo, f"tasks: [{{id: a, goal: A, report_path: '{report_path}'}}]\n") == [
        f"rlm.yaml:4:39: tasks[0].report_path: {message}"]


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
    # stderr has only the contract's warnings (no invariants, no verification: issue 9)
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


def test_an_input_directory_tracks_every_file_under_it(repo: Repo) -> None:
    repo.write("x\n", "data/deep/one.txt")
    repo.write_codex([{"id": "a", "goal": "A", "inputs": ["data"]}])
    assert repo.doit().code == 0
    assert repo.rlm("check").code == 0
    (repo.root / "data/deep/one.txt").write_text("changed\n")
    result = repo.rlm("check")
    assert result.code == 1
    assert "input_changed" in result.out
