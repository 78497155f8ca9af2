"""Reports at run time: a file the task did not write is never moved or overwritten, a symlink or
special file is never read through, paths are checked again when used, reports and logs have caps."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import RUN_DIR, Repo

from rlm_tasks.run import worker
from rlm_tasks.state import reports

REPORTS = f"{RUN_DIR}/artifacts/reports"


def python_worker(repo: Repo, code: str, **task: object) -> None:
    """One task whose worker is `python -c CODE` (RLM_REPORT_PATH is where the report goes)."""
    repo.write({"version": 1, "run_id": "t", "goal": "g",
                "agent": {"kind": "command", "timeout": 30, "command": ["{{ python }}", "-c", code]},
                "tasks": [{"id": "a", "goal": "A", **task}]})


def failed_line(result_out: str) -> str:
    [line] = [line for line in result_out.splitlines() if "FAILED" in line]
    return line


def test_a_file_the_task_did_not_write_is_never_touched(repo: Repo) -> None:
    repo.write("my notes\n", "notes/a.md")
    repo.write_codex([{"id": "a", "goal": "A", "report_path": "notes/a.md"}])
    result = repo.doit()
    assert result.code == 1
    assert failed_line(result.out) == (
        "  FAILED  map:a: report_path notes/a.md holds a file this task did not write (no provenance for it); "
        "not touched (move it away or choose another report_path)")
    assert repo.path("notes/a.md").read_text() == "my notes\n"
    assert repo.calls() == []


@pytest.mark.slow
def test_a_report_of_this_task_is_replaced_and_kept_in_history(repo: Repo) -> None:
    repo.write_codex([{"id": "a", "goal": "A", "report_path": "notes/a.md"}])
    assert repo.doit().code == 0
    first = repo.path("notes/a.md").read_text()
    repo.write_codex([{"id": "a", "goal": "A changed", "report_path": "notes/a.md"}])
    assert repo.doit().code == 0
    assert repo.path(f"{RUN_DIR}/artifacts/history/a/1.md").read_text() == first


def test_a_report_that_is_a_symlink_is_not_read_through(repo: Repo) -> None:
    python_worker(repo, "import os; os.symlink('/etc/passwd', os.environ['RLM_REPORT_PATH'])")
    result = repo.doit()
    assert result.code == 1
    rejected = f"{REPORTS}/a.attempt-1.rejected.md"
    assert failed_line(result.out).startswith(
        f"  FAILED  map:a: attempt 1, invalid_report: report is a symlink; it is not read through (report moved to "
        f"{rejected}); log: ")
    assert os.readlink(repo.path(rejected)) == "/etc/passwd"  # the link was moved, not its target copied


def test_a_report_that_is_a_fifo_is_not_read(repo: Repo) -> None:
    python_worker(repo, "import os; os.mkfifo(os.environ['RLM_REPORT_PATH'])")
    result = repo.doit()
    assert result.code == 1
    assert failed_line(result.out).startswith(
        "  FAILED  map:a: attempt 1, invalid_report: report is not a regular file (report moved to ")


def test_report_path_is_checked_again_when_used(repo: Repo) -> None:
    repo.write("x\n", "notes/keep.md")
    # b runs first and, as a worker with write access can, replaces notes/ with a link leading outside.
    repo.write("import os\nos.rename('notes', 'notes-old')\nos.symlink('/etc', 'notes')\n"
               "open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\n')\n", "swap.py")
    python_worker(repo, "raise SystemExit(5)", report_path="notes/a.md", depends_on=["b"])
    data = repo.root / "rlm.yaml"
    data.write_text(data.read_text() + "- id: b\n  goal: B\n  agent:\n    command: ['{{ python }}', swap.py]\n")
    assert repo.rlm("validate").code == 0, repo.rlm("validate").err
    result = repo.doit()
    assert result.code == 1
    etc = os.path.realpath("/etc")
    assert failed_line(result.out) == (f"  FAILED  map:a: report_path 'notes/a.md' resolves outside the repository "
                                       f"(to {etc}/a.md); refusing to use it")



def test_report_path_linked_into_git_while_the_run_goes_is_refused(repo: Repo) -> None:
    # b links notes/ into .git/ (inside the repository: the outside check alone would let it pass).
    repo.write("x\n", "notes/keep.md")
    repo.write("import os\nos.rename('notes', 'notes-old')\nos.symlink('.git', 'notes')\n"
               "open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\n')\n", "swap.py")
    python_worker(repo, "raise SystemExit(5)", report_path="notes/a.md", depends_on=["b"])
    data = repo.root / "rlm.yaml"
    data.write_text(data.read_text() + "- id: b\n  goal: B\n  agent:\n    command: ['{{ python }}', swap.py]\n")
    assert repo.rlm("validate").code == 0, repo.rlm("validate").err
    result = repo.doit()
    assert result.code == 1
    assert failed_line(result.out) == ("  FAILED  map:a: report_path 'notes/a.md' (through a symlink, '.git/a.md') "
                                       "is inside .git/; not touched")
    assert not (repo.root / ".git" / "a.md").exists()



def test_stdout_report_is_streamed_to_the_report(repo: Repo) -> None:
    python_worker(repo, "import sys; sys.stdout.write('# Contract Compliance\\n' + 'x' * 300000)")
    data = repo.root / "rlm.yaml"
    data.write_text(data.read_text().replace("command:", "report: stdout\n  command:"))
    assert repo.doit().code == 0
    assert repo.path(f"{REPORTS}/a.md").stat().st_size == len("# Contract Compliance\n") + 300000


def test_report_file_over_the_cap_is_not_read(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports, "MAX_REPORT_BYTES", 1000)
    python_worker(repo, "import os; open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\n' * 100)")
    result = repo.doit()
    assert result.code == 1
    assert failed_line(result.out).startswith(
        "  FAILED  map:a: attempt 1, invalid_report: report is 2,200 bytes, over the 1,000-byte cap (report moved to ")


def test_a_rejected_report_over_the_cap_keeps_only_its_ends(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports, "MAX_REPORT_BYTES", 1000)
    monkeypatch.setattr(reports, "KEPT_END_BYTES", 50)
    python_worker(repo, "import os; open(os.environ['RLM_REPORT_PATH'], 'w').write('H' * 60 + 'm' * 5000 + 'T' * 60)")
    result = repo.doit()
    assert result.code == 1
    moved = failed_line(result.out).rsplit("(report moved to ", 1)[1].split(")")[0]
    kept = repo.path(moved).read_text()
    digest = hashlib.sha256(("H" * 60 + "m" * 5000 + "T" * 60).encode()).hexdigest()
    assert kept == ("H" * 50 + f"\n\n[rlm: this rejected report was 5,120 bytes (sha256 {digest}), over the 1,000-byte "
                    "cap; only its first and last 50 bytes are kept]\n\n" + "T" * 50)


def test_log_over_the_cap_ends_the_attempt_and_keeps_the_tail(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "MAX_LOG_BYTES", 10_000)
    monkeypatch.setattr(worker, "LOG_TAIL_BYTES", 100)
    python_worker(repo, "import sys, time\nfor i in range(100000):\n    print('line', i, flush=True)\n"
                        "time.sleep(30)")
    result = repo.doit()
    assert result.code == 1
    line = failed_line(result.out)
    assert line.startswith(
        "  FAILED  map:a: attempt 1, over_cap: log went over the 10,000-byte cap (its tail is kept); log: ")
    log = Path(repo.root / line.rsplit("log: ", 1)[1]).read_text()
    first, rest = log.split("\n", 1)
    assert first.startswith("[rlm: log was ") and first.endswith(" over the 10,000-byte cap; only its tail is kept]")
    assert len(rest) == 100


@pytest.mark.slow
def test_a_report_deleted_by_another_worker_is_caught_by_the_closing_check(repo: Repo) -> None:
    # b runs after a and deletes a's report; a and b both succeed, the run must not end "all fresh"
    repo.write(f"import os\nos.remove('{REPORTS}/a.md')\n"
               "open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\n')\n", "vandal.py")
    python_worker(repo, "import os; open(os.environ['RLM_REPORT_PATH'], 'w').write('# Contract Compliance\\n')")
    data = repo.root / "rlm.yaml"
    data.write_text(data.read_text() + "- id: b\n  goal: B\n  depends_on: [a]\n  agent:\n"
                    "    command: ['{{ python }}', vandal.py]\n")
    result = repo.doit()
    assert result.code == 1, result.out
    assert result.out.splitlines()[-1] == (
        f"rlm: closing check: 1 report(s) deleted or changed during the run, not fresh: map:a deleted {REPORTS}/a.md")
    assert repo.rlm("check").code == 1


@pytest.mark.parametrize(("folder", "what"), [("artifacts/prompts", "prompt"), ("artifacts/history", "history")])
@pytest.mark.slow
def test_a_run_folder_linked_out_of_the_repository_is_never_written_through(
        repo: Repo, folder: str, what: str) -> None:
    """Paths are checked again at the moment of writing, not only at validation."""
    repo.write_command([{"id": "a", "goal": "A"}])
    assert repo.doit().code == 0
    repo.write_command([{"id": "a", "goal": "A, edited"}])  # stale: the next run writes a prompt, moves the report
    target = repo.path(f"{RUN_DIR}/{folder}")
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("/nonexistent-rlm-outside", target)
    result = repo.doit()
    assert result.code == 1
    line = failed_line(result.out)
    assert line.startswith(f"  FAILED  map:a: {what} '{RUN_DIR}/{folder}/a")
    assert line.endswith("resolves outside the repository (to /nonexistent-rlm-outside/a"
                         + (".md); refusing to use it" if what == "prompt" else "/1.md); refusing to use it"))
    assert repo.report("a").is_file()  # the earlier report stays where it was
