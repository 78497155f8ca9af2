"""`rlm archive`: an immutable, verified copy of a finished run, built all or nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import Repo, doit_namespace

from rlm_tasks import clock, jsonio
from rlm_tasks.cli.main import main
from rlm_tasks.config import schema
from rlm_tasks.config.plan import load_plan
from rlm_tasks.lifecycle import archive, cleanup, manifest
from rlm_tasks.lifecycle.runlock import RunLock
from rlm_tasks.state.context import RunContext

# its finished runs are written by hand (final.json and provenance.json of an older, smaller shape)
pytestmark = pytest.mark.hand_made_state

RUN = ".rlm/runs/r"
LOCAL = ".rlm/local/runs/r"
NOW = dt.datetime(2026, 11, 21, 17, 0, 0, tzinfo=dt.timezone.utc)
ARCHIVE_ID = "r-20261121T170000Z"


def write_config(root: Path, **extra: object) -> None:
    (root / "rlm.yaml").write_text(yaml.safe_dump({
        "version": 1, "run_id": "r", "goal": "Archive a run.",
        "agent": {"kind": "command", "command": ["true"]},
        "tasks": [{"id": "a", "goal": "a"}], "verify": [{"id": "v", "goal": "v", "depends_on": ["a"]}],
        **extra,
    }))


def finish_run(root: Path) -> None:
    """The files a finished run leaves (final.json and deferred.json)."""
    run = root / RUN
    jsonio.write_json(run / "final.json", {
        "version": 1, "run_id": "r", "goal_summary": "Archive a run.",
        "termination_decision": {"should_finish": True, "reason": "verified",
                                 "budget_used": {"iterations": 1, "workers": 2, "attempts": 2}},
        "conclusions": [], "evidence_paths": [], "deferred_opportunities": "none identified",
        "reduce_state_path": f"{RUN}/reduce_state.json", "deferred_path": f"{RUN}/deferred.json",
    })
    jsonio.write_json(run / "deferred.json", {"version": 1, "run_id": "r", "items": [], "count": 0,
                                              "reports_read": 2, "reports_without_section": []})
    jsonio.write_json(run / "provenance.json", {"version": 1, "run_id": "r", "tasks": {
        "a": {"started_at": "2026-11-20T09:00:00Z"}, "v": {"started_at": "2026-11-20T10:00:00Z"}}})
    for name, text in {f"{RUN}/artifacts/reports/a.md": "# a\n", f"{RUN}/artifacts/reports/v.md": "# v\n",
                       f"{LOCAL}/logs/a.attempt-1.log": "log a\n" * 100, f"{LOCAL}/logs/v.attempt-1.log": "log v\n",
                       f"{LOCAL}/progress/a.md": "step\n"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    # what final.json summarised, as `doit final` records it: archive refuses a final that is out of date
    from rlm_tasks.phases import final

    recorded = jsonio.read_json(run / "final.json")
    recorded.update(iteration=1, partial_reports=[], digests=final.digests(context(root)))
    recorded["termination_decision"].update(budget_exhausted=None, terminal=True)
    jsonio.write_json(run / "final.json", recorded)


@pytest.fixture
def finished(repo: Repo) -> Path:
    """The harness's repository with the files a finished run leaves."""
    write_config(repo.root)
    finish_run(repo.root)
    return repo.root


def context(root: Path) -> RunContext:
    return RunContext(load_plan(root / "rlm.yaml"))


def run_files(root: Path) -> dict[str, bytes]:
    """The run's files as the archive names them: the run dir only (logs stay machine-local)."""
    base = root / RUN
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def test_archive_copies_hashes_and_locks_the_run(finished: Path) -> None:
    before = run_files(finished)
    result = archive.create(context(finished), now=NOW)
    dest = finished / ".rlm/archive" / ARCHIVE_ID
    assert result.archive_id == ARCHIVE_ID and result.archive_rel == f".rlm/archive/{ARCHIVE_ID}"
    assert sorted(p.name for p in dest.iterdir()) == ["in_use_by", "meta.json", "run"]
    meta = json.loads((dest / "meta.json").read_text())
    assert schema.check("archive_meta", meta) == []
    assert {k: meta[k] for k in ("goal_summary", "start_timestamp", "termination_reason", "archived_at")} == {
        "goal_summary": "Archive a run.", "start_timestamp": "2026-11-20T09:00:00Z",
        "termination_reason": "verified", "archived_at": "2026-11-21T17:00:00Z"}
    assert meta["retention"] == {"ttl_days": 14.0, "keep_forever": False, "size_bytes": sum(map(len, before.values()))}
    assert sorted(meta["manifest"]) == sorted(before)  # every file, each with its sha256
    assert {p: (dest / "run" / p).read_bytes() for p in meta["manifest"]} == before
    for path in [dest, dest / "meta.json", *(dest / "run").rglob("*")]:
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    assert manifest.verify(finished, ARCHIVE_ID).intact

    pointer = json.loads((finished / RUN / "archived_to.json").read_text())
    assert schema.check("archived_to", pointer) == []
    assert pointer["archive_path"] == f".rlm/archive/{ARCHIVE_ID}"
    tarball = f"{LOCAL}/transient-{ARCHIVE_ID}.tar.gz"
    assert pointer["transient"] == {"mode": "compress", "paths": [f"{LOCAL}/logs", f"{LOCAL}/progress"],
                                    "compressed_to": tarball}
    assert not (finished / LOCAL / "logs").exists() and not (finished / LOCAL / "progress").exists()
    with tarfile.open(finished / tarball) as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == [
            "artifacts/logs/a.attempt-1.log", "artifacts/logs/v.attempt-1.log", "artifacts/progress/a.md"]
    assert (finished / RUN / "final.json").exists() and (finished / RUN / "artifacts/reports/a.md").exists()


@pytest.mark.parametrize(("mode", "logs_left"), [("remove", False), ("keep", True)])
def test_transient_mode(finished: Path, mode: str, logs_left: bool) -> None:
    write_config(finished, lifecycle={"transient": mode, "ttl_days": 3, "keep_forever": True})
    result = archive.create(context(finished), now=NOW)
    assert (finished / LOCAL / "logs").exists() is logs_left
    assert not list((finished / LOCAL).glob("*.tar.gz"))
    meta = json.loads((finished / ".rlm/archive" / result.archive_id / "meta.json").read_text())
    assert meta["retention"]["ttl_days"] == 3 and meta["retention"]["keep_forever"] is True
    assert not [name for name in meta["manifest"] if name.startswith(("artifacts/logs/", "artifacts/progress/"))]


def test_archive_refused_without_final_outputs(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (finished / RUN / "final.json").unlink()
    (finished / RUN / "deferred.json").unlink()
    assert main(["archive"]) == 1
    assert capsys.readouterr().err == (
        "rlm: archive refused: run 'r' has no .rlm/runs/r/final.json and no .rlm/runs/r/deferred.json; "
        "finish the run first (`doit final`)\n")
    assert not (finished / ".rlm/archive").exists()
    assert not (finished / RUN / "archived_to.json").exists()


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_archive_failing_half_way_leaves_nothing(finished: Path, monkeypatch: pytest.MonkeyPatch,
                                                 error: BaseException) -> None:
    before = run_files(finished)
    copied: list[Path] = []
    real_copy = archive._copy_file

    def copy_then_fail(src: Path, dest: Path) -> tuple[str, int]:
        if len(copied) == 3:
            raise error
        copied.append(src)
        return real_copy(src, dest)

    monkeypatch.setattr(archive, "_copy_file", copy_then_fail)
    with pytest.raises((archive.ArchiveFailed, KeyboardInterrupt)) as caught:
        archive.create(context(finished), now=NOW)
    if isinstance(error, OSError):
        assert str(caught.value) == "archive failed, nothing was archived: [Errno 28] No space left on device"
    assert len(copied) == 3
    assert list((finished / ".rlm/archive").iterdir()) == []  # no archive, no temp directory
    assert run_files(finished) == before  # the run directory is untouched


KILL_MID_COPY = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from rlm_tasks.lifecycle import archive
    from rlm_tasks.config.plan import load_plan
    from rlm_tasks.state.context import RunContext
    real, count = archive._copy_file, [0]
    def copy(src, dest):
        count[0] += 1
        if count[0] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dest)
    archive._copy_file = copy
    archive.create(RunContext(load_plan("rlm.yaml")))
""")


@pytest.mark.slow
def test_archive_killed_half_way_leaves_no_archive(finished: Path) -> None:
    done = subprocess.run([sys.executable, "-c", KILL_MID_COPY], cwd=finished, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == -signal.SIGKILL
    assert cleanup.archive_ids(finished) == []
    leftovers = [p.name for p in (finished / ".rlm/archive").iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp~r-")  # hidden: never taken for an archive
    result = cleanup.run(finished)
    assert [(d.action, d.archive_id) for d in result.decisions] == [("removed-partial", leftovers[0])]
    assert list((finished / ".rlm/archive").iterdir()) == []


def test_verify_reports_tampering(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive.create(context(finished), now=NOW)
    assert main(["archive", "verify", ARCHIVE_ID]) == 0
    assert capsys.readouterr().out == f"archive {ARCHIVE_ID}: intact (5 files match the manifest)\n"

    run = finished / ".rlm/archive" / ARCHIVE_ID / "run"
    os.chmod(run / "artifacts/reports", 0o755)
    os.chmod(run / "artifacts/reports/a.md", 0o644)
    (run / "artifacts/reports/a.md").write_text("# a, edited\n")
    (run / "artifacts/reports/v.md").unlink()
    (run / "artifacts/reports/new.md").write_text("# new\n")
    assert main(["archive", "verify", ARCHIVE_ID]) == 1
    assert capsys.readouterr().out == (
        f"archive {ARCHIVE_ID}: NOT intact\n"
        "  changed  artifacts/reports/a.md\n"
        "  missing  artifacts/reports/v.md\n"
        "  extra    artifacts/reports/new.md\n")
    assert main(["archive", "verify", "r-20000101T000000Z"]) == 2
    assert capsys.readouterr().err == (f"no archive 'r-20000101T000000Z' under .rlm/archive; archives: {ARCHIVE_ID}\n")


def test_rlm_archive_takes_the_run_lock(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = context(finished)
    with RunLock(ctx.layout):
        assert main(["archive"]) == 3
    assert "rlm: run 'r' is locked by another process" in capsys.readouterr().err
    assert cleanup.archive_ids(finished) == []
    assert main(["archive", "--ttl-days", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("archived run r to .rlm/archive/r-") and "logs compressed to" in out
    (archive_id,) = cleanup.archive_ids(finished)
    assert json.loads((finished / ".rlm/archive" / archive_id / "meta.json").read_text())["retention"]["ttl_days"] == 2
    assert not ctx.layout.lock_holder_json.exists()  # released


def test_use_and_release(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive.create(context(finished), now=NOW)
    assert main(["archive", "use", ARCHIVE_ID, "--run", "next"]) == 0
    marker = finished / ".rlm/archive" / ARCHIVE_ID / "in_use_by" / "next"
    assert schema.check("in_use_marker", json.loads(marker.read_text())) == []
    assert json.loads(marker.read_text())["source"] == "manual"
    assert main(["archive", "use", ARCHIVE_ID]) == 0  # --run defaults to rlm.yaml's run
    assert cleanup.markers(finished / ".rlm/archive" / ARCHIVE_ID) == ["next", "r"]
    assert main(["archive", "release", ARCHIVE_ID, "--run", "next"]) == 0
    assert main(["archive", "release", ARCHIVE_ID, "--run", "next"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"archive {ARCHIVE_ID}: released by run next", f"archive {ARCHIVE_ID}: was not in use by run next"]
    assert main(["archive", "use", "nope", "--run", "x"]) == 2


def test_doit_archive_is_a_task_but_not_a_default_one(finished: Path) -> None:
    with doit_namespace() as namespace:
        assert "task_archive" in namespace
        assert "archive" not in namespace["DOIT_CONFIG"]["default_tasks"]
        assert namespace["task_archive"]()["task_dep"] == ["final"]


def test_a_new_archive_survives_its_own_cleanup(finished: Path) -> None:
    """ttl_days 0: deleted by the next cleanup, not by the one its own archiving runs."""
    earlier = clock.utc_now() - dt.timedelta(hours=1)
    first = archive.create(context(finished), ttl_days=0, now=earlier)
    assert cleanup.archive_ids(finished) == [first.archive_id]
    second = archive.create(context(finished), ttl_days=0, now=earlier + dt.timedelta(seconds=1))
    assert cleanup.archive_ids(finished) == [second.archive_id]
    assert second.cleanup.deleted == [first.archive_id]
    assert second.lines("r")[-1] == f"cleanup: deleted {first.archive_id}: expired: age 0.0 days > ttl_days 0"


# ---- archives never follow symlinks ---------------------------------------------------------------

def test_a_symlink_in_the_run_refuses_the_archive(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.symlink("/etc/passwd", finished / RUN / "artifacts/reports/leak.md")
    assert main(["archive"]) == 1
    assert capsys.readouterr().err == (
        "rlm: archive refused: .rlm/runs/r/artifacts/reports/leak.md is a symlink (to /etc/passwd); "
        "archives never follow links: replace it with the file or remove it\n")
    assert not (finished / ".rlm/archive").exists()


def test_verify_reports_links_and_dangling_links(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive.create(context(finished), now=NOW)
    capsys.readouterr()
    reports = finished / ".rlm/archive" / ARCHIVE_ID / "run/artifacts/reports"
    os.chmod(reports, 0o755)
    os.symlink("/nonexistent/target", reports / "dangling.md")
    assert main(["archive", "verify", ARCHIVE_ID]) == 1
    out = capsys.readouterr().out
    assert "run/artifacts/reports/dangling.md is a symlink (to /nonexistent/target)" in out
    assert out.startswith(f"archive {ARCHIVE_ID}: NOT intact\n")


def test_verify_catches_an_edited_manifest_a_dropped_entry_and_files_beside_run(
        finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tampering that keeps run/ consistent with meta.json is still found."""
    archive.create(context(finished), now=NOW)
    capsys.readouterr()
    path = finished / ".rlm/archive" / ARCHIVE_ID
    os.chmod(path, 0o755)
    os.chmod(path / "meta.json", 0o644)
    os.chmod(path / "run/artifacts/reports", 0o755)
    os.chmod(path / "run/artifacts/reports/a.md", 0o644)
    meta = json.loads((path / "meta.json").read_text())

    # a file edited and its manifest entry edited to match (meta.json's own digest edited too)
    (path / "run/artifacts/reports/a.md").write_text("# a, edited\n")
    meta["manifest"]["artifacts/reports/a.md"] = hashlib.sha256(b"# a, edited\n").hexdigest()
    meta["manifest_sha256"] = manifest.manifest_digest(meta["manifest"])
    (path / "meta.json").write_text(json.dumps(meta))
    (path / "notes.txt").write_text("added beside run/\n")
    assert main(["archive", "verify", ARCHIVE_ID]) == 1
    assert capsys.readouterr().out == (
        f"archive {ARCHIVE_ID}: NOT intact\n"
        "  the manifest does not match the digest recorded in .rlm/runs/r/archived_to.json: "
        "meta.json was edited after archiving\n"
        "  extra    ../notes.txt\n")

    # a file dropped together with its manifest entry
    (path / "notes.txt").unlink()
    (path / "run/artifacts/reports/a.md").unlink()
    del meta["manifest"]["artifacts/reports/a.md"]
    (path / "meta.json").write_text(json.dumps(meta))
    assert main(["archive", "verify", ARCHIVE_ID]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        f"archive {ARCHIVE_ID}: NOT intact",
        "  meta.json: file_count is 5 but the manifest lists 4 files (an entry was removed or added)",
        "  meta.json: the manifest does not match its recorded digest (manifest_sha256): edited",
    ]


def test_logs_never_reach_the_archive_and_rejected_copies_leave_the_active_run(finished: Path) -> None:
    rejected = finished / RUN / "artifacts/reports/a.attempt-1.rejected.md"
    rejected.write_text("# rejected\n")
    checked_before = main(["check"])
    result = archive.create(context(finished), now=NOW)
    dest = finished / ".rlm/archive" / result.archive_id
    assert not list(dest.rglob("*.log"))  # the archive is committed: no log in it
    assert not (finished / LOCAL / "logs").exists()
    assert not rejected.exists()  # trimmed from the active run (step 4)
    assert (dest / "run/artifacts/reports/a.attempt-1.rejected.md").exists()  # the archive keeps the run as it was
    pointer = json.loads((finished / RUN / "archived_to.json").read_text())
    assert pointer["transient"]["paths"] == [f"{LOCAL}/logs", f"{LOCAL}/progress",
                                             f"{RUN}/artifacts/reports/a.attempt-1.rejected.md"]
    with tarfile.open(finished / pointer["transient"]["compressed_to"]) as tar:
        assert "artifacts/reports/a.attempt-1.rejected.md" in tar.getnames()
    assert (finished / RUN / "artifacts/reports/a.md").exists() and (finished / RUN / "provenance.json").exists()
    assert main(["check"]) == checked_before  # reports, prompts and provenance kept: `rlm check` says the same
