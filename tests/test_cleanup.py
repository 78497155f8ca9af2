"""TTL cleanup and in-use markers: what is deleted, what is kept and why, and two cleanups at once."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import wait_for

from rlm_tasks import clock, jsonio, layout, procs
from rlm_tasks.cli.main import main
from rlm_tasks.config import schema
from rlm_tasks.config.plan import load_plan
from rlm_tasks.lifecycle import cleanup
from rlm_tasks.lifecycle.cleanup import Decision
from rlm_tasks.run import housekeeping
from rlm_tasks.state.context import RunContext

# its archives are written by hand (meta.json and markers with only what cleanup reads)
pytestmark = pytest.mark.hand_made_state

NOW = dt.datetime(2026, 11, 21, 12, 0, 0, tzinfo=dt.timezone.utc)


def make_archive(root: Path, archive_id: str, age_days: float, *, ttl_days: float = 14, keep_forever: bool = False,
                 used_by: tuple[str, ...] = ()) -> Path:
    """An archive as `rlm archive` leaves it (read-only run/), archived `age_days` before NOW."""
    path = root / ".rlm/archive" / archive_id
    (path / "run").mkdir(parents=True)
    (path / "run/final.json").write_text("{}\n")
    jsonio.write_json(path / "meta.json", {
        "archived_at": clock.iso(NOW - dt.timedelta(days=age_days)),
        "retention": {"ttl_days": ttl_days, "keep_forever": keep_forever, "size_bytes": 3},
    })
    (path / "in_use_by").mkdir()
    for run_id in used_by:
        jsonio.write_json(path / "in_use_by" / run_id, {"run_id": run_id, "since": "2026-11-01T00:00:00Z",
                                                       "source": "manual"})
    os.chmod(path / "run/final.json", 0o444)
    os.chmod(path / "run", 0o555)
    return path


def log_lines(root: Path) -> list[str]:
    path = layout.cleanup_log(root)
    return path.read_text().splitlines() if path.exists() else []


def test_decisions_for_each_kind_of_archive(tmp_path: Path) -> None:
    make_archive(tmp_path, "r-20261101T000000Z", 20)
    make_archive(tmp_path, "r-20261102T000000Z", 5)
    make_archive(tmp_path, "r-20261103T000000Z", 20, keep_forever=True)
    make_archive(tmp_path, "r-20261104T000000Z", 20, used_by=("next",))
    make_archive(tmp_path, "r-20261105T000000Z", 2, ttl_days=1)
    result = cleanup.run(tmp_path, now=NOW)
    assert not result.skipped
    assert cleanup.archive_ids(tmp_path) == ["r-20261102T000000Z", "r-20261103T000000Z", "r-20261104T000000Z"]
    assert result.deleted == ["r-20261101T000000Z", "r-20261105T000000Z"]
    assert log_lines(tmp_path) == [
        "2026-11-21T12:00:00Z deleted r-20261101T000000Z: expired: age 20.0 days > ttl_days 14",
        "2026-11-21T12:00:00Z kept-forever r-20261103T000000Z: keep_forever is true (age 20.0 days > ttl_days 14)",
        "2026-11-21T12:00:00Z kept-in-use r-20261104T000000Z: in use by next (age 20.0 days > ttl_days 14)",
        "2026-11-21T12:00:00Z deleted r-20261105T000000Z: expired: age 2.0 days > ttl_days 1",
    ]
    # The same decisions a day later add no lines; a released archive goes.
    cleanup.run(tmp_path, now=NOW + dt.timedelta(days=1))
    assert len(log_lines(tmp_path)) == 4
    assert cleanup.release(tmp_path, "r-20261104T000000Z", "next")
    cleanup.run(tmp_path, now=NOW + dt.timedelta(days=1))
    assert log_lines(tmp_path)[4:] == [
        "2026-11-22T12:00:00Z deleted r-20261104T000000Z: expired: age 21.0 days > ttl_days 14"]
    assert not list((tmp_path / ".rlm/archive").glob(".deleting*"))


def test_dry_run_prints_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    make_archive(tmp_path, "r-20200101T000000Z", 10_000)
    make_archive(tmp_path, "r-20200102T000000Z", 10_000, keep_forever=True)
    assert main(["cleanup", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would delete r-20200101T000000Z: expired: age ")
    assert cleanup.archive_ids(tmp_path) == ["r-20200101T000000Z", "r-20200102T000000Z"]
    assert log_lines(tmp_path) == []
    assert main(["cleanup"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["deleted r-20200101T000000Z", "kept-forever r-20200102T000000Z"]
    assert cleanup.archive_ids(tmp_path) == ["r-20200102T000000Z"]



def test_an_archive_that_is_a_symlink_is_never_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    elsewhere = make_archive(tmp_path / "elsewhere", "r-20200101T000000Z", 10_000)  # expired, were it an archive
    (tmp_path / ".rlm/archive").mkdir(parents=True)
    os.symlink(elsewhere, tmp_path / ".rlm/archive/r-20200101T000000Z")
    assert main(["cleanup"]) == 0
    assert capsys.readouterr().out == ("kept-unreadable r-20200101T000000Z: it is a symlink, not an archive; "
                                       "not followed\n")
    assert (elsewhere / "run/final.json").exists()
    assert os.listdir(tmp_path / ".rlm/archive") == ["r-20200101T000000Z"]  # no .deleting~ left behind


def test_in_use_markers_are_never_written_through_a_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = make_archive(tmp_path, "r-20261101T000000Z", 1)
    os.rmdir(path / "in_use_by")  # it stays writable: a worker can replace it with a link leading out
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", path / "in_use_by")
    assert main(["archive", "use", "r-20261101T000000Z", "--run", "next"]) == 1
    assert capsys.readouterr().err == ("rlm: no in-use marker written: .rlm/archive/r-20261101T000000Z/in_use_by is "
                                       "a symlink; not followed\n")
    assert sorted(os.listdir(tmp_path / "elsewhere")) == []
    assert cleanup.sync_uses(tmp_path, "next", ["r-20261101T000000Z"]) == [
        "uses: no in-use marker written: .rlm/archive/r-20261101T000000Z/in_use_by is a symlink; not followed"]
    assert sorted(os.listdir(tmp_path / "elsewhere")) == []

def test_cleanup_skips_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    make_archive(tmp_path, "r-20200101T000000Z", 10_000)
    layout.cleanup_lock_file(tmp_path).parent.mkdir(parents=True)
    with open(layout.cleanup_lock_file(tmp_path), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as any process holding the lock: an OS file lock on cleanup.lock
        done = subprocess.run([sys.executable, "-m", "rlm_tasks", "cleanup"], cwd=tmp_path, capture_output=True,
                              text=True, check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "cleanup skipped: another process is cleaning up (holds .rlm/local/locks/cleanup.lock)\n", "")
    assert cleanup.archive_ids(tmp_path) == ["r-20200101T000000Z"]
    assert log_lines(tmp_path) == []


RACE = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from rlm_tasks.lifecycle import cleanup
    root, go, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    (ready / str(os.getpid())).touch()  # imported, at the start line
    while not go.exists():
        time.sleep(0.002)
    result = cleanup.run(root)
    print(json.dumps({"skipped": result.skipped, "deleted": result.deleted}))
""")


def test_concurrent_cleanups_delete_each_archive_once(tmp_path: Path) -> None:
    ids = [f"r-2020010{i}T000000Z" for i in range(1, 9)]
    for archive_id in ids:
        make_archive(tmp_path, archive_id, 10_000)
    go, ready = tmp_path / "go", tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), str(go), str(ready)],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    wait_for(lambda: len(list(ready.iterdir())) == 4, "the four cleanups at the start line")
    go.touch()
    results = [json.loads(p.communicate(timeout=30)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    deleted = sorted(d for r in results for d in r["deleted"])
    assert deleted == ids  # every archive deleted, none twice
    assert not any(r["skipped"] and r["deleted"] for r in results)
    lines = log_lines(tmp_path)
    assert len(lines) == len(set(lines)) == len(ids)
    assert sorted(line.split()[2].rstrip(":") for line in lines) == ids
    assert list((tmp_path / ".rlm/archive").iterdir()) == []


def test_abandoned_partial_directories_are_swept(tmp_path: Path) -> None:
    base = tmp_path / ".rlm/archive"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    gone = base / f".tmp~r-20260101T000000Z~{procs.hostname()}~{dead.stdout.strip()}"
    alive = base / f".tmp~r-20260102T000000Z~{procs.hostname()}~{os.getpid()}"
    for path in (gone, alive):
        (path / "run").mkdir(parents=True)
    assert [(d.action, d.archive_id) for d in cleanup.collect(tmp_path)] == [("removed-partial", gone.name)]
    cleanup.run(tmp_path)
    assert sorted(p.name for p in base.iterdir()) == [alive.name]  # still being built by a live process


def test_uses_marks_archives_automatically(tmp_path: Path) -> None:
    make_archive(tmp_path, "old-20200101T000000Z", 10_000)
    make_archive(tmp_path, "old-20200102T000000Z", 10_000)
    config = {"version": 1, "run_id": "next", "goal": "g", "agent": {"kind": "command", "command": ["true"]},
              "tasks": [{"id": "a", "goal": "a"}],
              "uses": ["old-20200101T000000Z", "old-20200102T000000Z", "missing-20200101T000000Z"]}
    (tmp_path / "rlm.yaml").write_text(yaml.safe_dump(config))
    lines: list[str] = []
    housekeeping.on_run_start(RunContext(load_plan(tmp_path / "rlm.yaml")), lines.append)
    assert lines == [
        "rlm: uses: archive 'missing-20200101T000000Z' not found under .rlm/archive; nothing to mark\n",
        "rlm: marked archive old-20200101T000000Z in use by run next (uses: in rlm.yaml)\n",
        "rlm: marked archive old-20200102T000000Z in use by run next (uses: in rlm.yaml)\n",
    ]
    marker = tmp_path / ".rlm/archive/old-20200101T000000Z/in_use_by/next"
    assert schema.check("in_use_marker", json.loads(marker.read_text())) == []
    assert cleanup.archive_ids(tmp_path) == ["old-20200101T000000Z", "old-20200102T000000Z"]  # kept: in use

    config["uses"] = ["old-20200102T000000Z"]  # dropped from uses: → marker released → deleted
    (tmp_path / "rlm.yaml").write_text(yaml.safe_dump(config))
    lines.clear()
    housekeeping.on_run_start(RunContext(load_plan(tmp_path / "rlm.yaml")), lines.append)
    assert lines == ["rlm: released archive old-20200101T000000Z (no longer under uses: of run next)\n",
                     "rlm: cleanup: deleted 1 expired archive(s): old-20200101T000000Z (see .rlm/local/cleanup.log)\n"]
    assert cleanup.archive_ids(tmp_path) == ["old-20200102T000000Z"]


def test_manual_markers_survive_uses_sync(tmp_path: Path) -> None:
    make_archive(tmp_path, "old-20200101T000000Z", 10_000, used_by=("next",))
    with cleanup.locked(tmp_path) as got:
        assert got
        assert cleanup.sync_uses(tmp_path, "next", ()) == []
    assert cleanup.markers(tmp_path / ".rlm/archive/old-20200101T000000Z") == ["next"]


def test_decision_line_format() -> None:
    assert Decision("x-20200101T000000Z", "deleted", "expired").line(NOW) == (
        "2026-11-21T12:00:00Z deleted x-20200101T000000Z: expired")
