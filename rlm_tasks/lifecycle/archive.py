"""Immutable archives of finished runs: .rlm/archive/<run_id>-<UTC stamp>/{run/, meta.json, in_use_by/}.

An archive is built in a hidden directory beside the others and renamed into
place only when complete, so one that fails half-way leaves no partial archive
(a killed build leaves a `.tmp~…` directory that the next cleanup removes).
`meta.json` carries a sha256 manifest of every archived file; `verify`
(lifecycle/manifest.py) re-hashes against it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from rlm_tasks import jsonio
from rlm_tasks.clock import iso, parse_iso, utc_now
from rlm_tasks.config import schema
from rlm_tasks.errors import UserError
from rlm_tasks.fs import remove_tree
from rlm_tasks.layout import ARCHIVE_DIR, archive_root
from rlm_tasks.lifecycle import cleanup
from rlm_tasks.lifecycle.manifest import CHUNK, files, manifest_digest, not_regular
from rlm_tasks.phases import final as final_phase
from rlm_tasks.procs import hostname
from rlm_tasks.state import drift
from rlm_tasks.state.budget import budget_use
from rlm_tasks.state.context import RunContext

FORMAT_VERSION = 1
REQUIRED_OUTPUTS = ("final.json", "deferred.json")
# A run's heavy transient files: its machine-local logs and progress files, and the rejected report copies in
# its run folder. The archive never holds the logs (archives are committed, and a log holds whatever a worker
# printed); after archiving, lifecycle.transient compresses them into a machine-local tarball, removes them or
# keeps them. Reports, prompts and provenance stay, so `rlm check` still works.
TRANSIENT_DIRS = ("artifacts/logs", "artifacts/progress")
REJECTED_GLOB = "*.rejected*.md"


def _transient_sources(ctx: RunContext) -> dict[str, str]:
    """Name inside the tarball → repo-relative path (a directory under .rlm/local/, or a rejected copy)."""
    found = dict(zip(TRANSIENT_DIRS, (ctx.layout.logs_rel, ctx.layout.progress_dir_rel), strict=True))
    reports_dir = f"{ctx.layout.artifacts_rel}/reports"
    with contextlib.suppress(OSError):
        for path in sorted(ctx.layout.abs(reports_dir).glob(REJECTED_GLOB)):
            if path.is_file() and not path.is_symlink():
                found[f"artifacts/reports/{path.name}"] = f"{reports_dir}/{path.name}"
    return found
# read-only, and no more readable than the user's umask lets new files be (077: the owner only)
READ_ONLY_FILE = (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH) & ~jsonio.UMASK
READ_ONLY_DIR = (READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) & ~jsonio.UMASK
class ArchiveRefused(UserError):
    """The run cannot be archived yet (final outputs missing) or the archive already exists."""


class ArchiveFailed(UserError):
    """Archiving stopped half-way on an OS error; nothing was archived."""


class ArchiveResult(NamedTuple):
    archive_id: str
    archive_rel: str
    file_count: int
    size_bytes: int
    transient: str  # what happened to the run's logs
    cleanup: cleanup.CleanupResult
    notes: tuple[str, ...] = ()

    def lines(self, run_id: str) -> list[str]:
        size = f"{self.size_bytes / 1024:.1f} KiB" if self.size_bytes >= 1024 else f"{self.size_bytes} bytes"
        swept = cleanup.summary_lines(self.cleanup, deletions_only=True)
        return [f"archived run {run_id} to {self.archive_rel}/ ({self.file_count} files, {size}); {self.transient}",
                *self.notes, *(line if self.cleanup.skipped else f"cleanup: {line}" for line in swept)]


def archive_rel(archive_id: str) -> str:
    return f"{ARCHIVE_DIR}/{archive_id}"


def archived_to_path(ctx: RunContext) -> Path:
    return ctx.layout.run_dir / "archived_to.json"


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# ---- hashing and copying ----------------------------------------------------------------------------------

def _copy_file(src: Path, dest: Path) -> tuple[str, int]:
    """Copy one file, hashing what is written (one read per file)."""
    digest, size = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as reader, dest.open("wb") as writer:
        for block in iter(lambda: reader.read(CHUNK), b""):
            digest.update(block)
            writer.write(block)
            size += len(block)
    shutil.copystat(src, dest)
    return digest.hexdigest(), size


def _make_read_only(tree: Path) -> None:
    for dirpath, _dirs, names in os.walk(tree, topdown=False):
        for name in names:
            os.chmod(Path(dirpath) / name, READ_ONLY_FILE)
        os.chmod(dirpath, READ_ONLY_DIR)


# ---- building one archive ---------------------------------------------------------------------------------

def _read_outputs(ctx: RunContext) -> dict[str, Any]:
    missing = [name for name in REQUIRED_OUTPUTS if not (ctx.layout.run_dir / name).is_file()]
    if missing:
        raise ArchiveRefused(f"archive refused: run '{ctx.plan.run_id}' has no "
                             + " and no ".join(f"{ctx.layout.run_dir_rel}/{m}" for m in missing)
                             + "; finish the run first (`doit final`)")
    try:
        final = jsonio.read_json(ctx.layout.run_dir / "final.json")
    except ValueError as exc:
        raise ArchiveRefused(f"archive refused: {ctx.layout.run_dir_rel}/final.json is not valid JSON: {exc}") from None
    if not isinstance(final, dict):
        raise ArchiveRefused(f"archive refused: {ctx.layout.run_dir_rel}/final.json is not a JSON object")
    _refuse_unless_terminal(ctx, final)
    return final


def _refuse_unless_terminal(ctx: RunContext, final: dict[str, Any]) -> None:
    """An archive is the run's last word: only a current final.json whose decision ends the run."""
    where = f"{ctx.layout.run_dir_rel}/final.json"
    changed = final_phase.out_of_date(ctx)
    if changed:
        raise ArchiveRefused(f"archive refused: {where} is out of date ({'; '.join(changed)}); "
                             "run `doit final` again, then archive")
    decision = final.get("termination_decision")
    decision = decision if isinstance(decision, dict) else {}
    if decision.get("should_finish") is True or decision.get("budget_exhausted"):
        return
    exhausted = budget_use(ctx).exhausted(ctx)
    if exhausted is None:
        raise ArchiveRefused(f"archive refused: the decision in {where} says iterate (should_finish: false) and "
                             "budget is left: change the plan and run doit for the next iteration, or write "
                             "`should_finish: true` in rlm.yaml and run `doit final`, then archive")


def _run_window(ctx: RunContext) -> tuple[str, str]:
    """(start, end) of the run: the drift baseline or first worker start; final.json's time."""
    starts = [parse_iso(drift.baseline_taken_at(ctx))]
    starts += [parse_iso(entry.get("started_at")) for entry in ctx.store.entries().values()]
    known = [s for s in starts if s is not None]
    if known:
        start = min(known)
    else:
        mtimes = [p.stat().st_mtime for p in files(ctx.layout.run_dir)]
        start = dt.datetime.fromtimestamp(min(mtimes), dt.timezone.utc)
    end = dt.datetime.fromtimestamp((ctx.layout.run_dir / "final.json").stat().st_mtime, dt.timezone.utc)
    return iso(start), iso(end)


def _meta(ctx: RunContext, final: dict[str, Any], archive_id: str, now: dt.datetime, ttl_days: float,
          keep_forever: bool, manifest: dict[str, str], size: int) -> dict[str, Any]:
    raw = final.get("termination_decision")
    decision: dict[str, Any] = raw if isinstance(raw, dict) else {}
    start, end = _run_window(ctx)
    return {
        "version": FORMAT_VERSION,
        "archive_id": archive_id,
        "run_id": ctx.plan.run_id,
        "archived_at": iso(now),
        "goal_summary": str(final.get("goal_summary") or ctx.plan.goal),
        "start_timestamp": start,
        "end_timestamp": end,
        "termination_reason": str(decision.get("reason") or ""),
        "retention": {"ttl_days": ttl_days, "keep_forever": keep_forever, "size_bytes": size},
        "file_count": len(manifest),
        "manifest": manifest,
        "manifest_sha256": manifest_digest(manifest),
    }


def build(ctx: RunContext, *, ttl_days: float, keep_forever: bool, now: dt.datetime) -> tuple[str, dict[str, Any]]:
    """Steps 1-3: copy the run, write meta.json with the manifest, make it read-only; all or nothing."""
    final = _read_outputs(ctx)
    links = not_regular(ctx.layout.run_dir)
    if links:
        raise ArchiveRefused(f"archive refused: {os.path.dirname(ctx.layout.run_dir_rel)}/{links[0]}"
                             + (f" (and {len(links) - 1} more)" if len(links) > 1 else "")
                             + "; archives never follow links: replace it with the file or remove it")
    archive_id = f"{ctx.plan.run_id}-{stamp(now)}"
    base = archive_root(ctx.plan.root)
    dest = base / archive_id
    if dest.exists():
        raise ArchiveRefused(f"archive {archive_rel(archive_id)} already exists; archives are immutable "
                             "(archive again in a second)")
    base.mkdir(parents=True, exist_ok=True)
    # Named so cleanup can tell whether the process building it still lives.
    tmp = base / f".tmp~{archive_id}~{hostname()}~{os.getpid()}"
    if tmp.exists():
        remove_tree(tmp)  # left by a dead process that had our pid
    tmp.mkdir()
    try:
        source = ctx.layout.run_dir
        manifest: dict[str, str] = {}
        size = 0
        for path in files(source):  # the run folder only: logs stay machine-local
            rel = path.relative_to(source).as_posix()
            manifest[rel], n = _copy_file(path, tmp / "run" / rel)
            size += n
        meta = _meta(ctx, final, archive_id, now, ttl_days, keep_forever, manifest, size)
        problems = schema.check("archive_meta", meta)
        if problems:
            raise ArchiveFailed("archive failed: meta.json does not match its schema: " + "; ".join(problems))
        jsonio.write_json(tmp / "meta.json", meta)
        (tmp / cleanup.MARKERS).mkdir()
        _make_read_only(tmp / "run")
        os.chmod(tmp / "meta.json", READ_ONLY_FILE)
        os.chmod(tmp, READ_ONLY_DIR)  # meta.json cannot be replaced either; in_use_by/ stays writable
        os.rename(tmp, dest)
    except OSError as exc:
        remove_tree(tmp)
        raise ArchiveFailed(f"archive failed, nothing was archived: {exc}") from None
    except BaseException:
        remove_tree(tmp)
        raise
    return archive_id, meta


def _trim_transient(ctx: RunContext, present: list[str], tarball: str | None) -> None:
    """Step 5: compress (when `tarball` names the file) and remove the run's transient directories."""
    if tarball is not None:
        import tarfile  # only when compressing logs

        target = ctx.layout.abs(tarball)
        fd, tmp = tempfile.mkstemp(prefix=".transient.", suffix=".tmp", dir=target.parent)
        os.fchmod(fd, jsonio.new_file_mode(target))
        os.close(fd)
        try:
            with tarfile.open(tmp, "w:gz") as tar:
                names = {local: name for name, local in _transient_sources(ctx).items()}
                for rel in present:
                    tar.add(ctx.layout.abs(rel), arcname=names[rel])  # the names the archive uses
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    for rel in present:
        path = ctx.layout.abs(rel)
        if path.is_dir() and not path.is_symlink():
            remove_tree(path)
        else:
            path.unlink(missing_ok=True)


def _sweep(ctx: RunContext, archive_id: str) -> tuple[cleanup.CleanupResult, list[str]]:
    """Step 6: TTL cleanup, and release of the markers this run's `uses:` set (a finished run needs none)."""
    root = ctx.plan.root
    with cleanup.locked(root) as got:
        if not got:
            return cleanup.CleanupResult(True), []
        notes = cleanup.sync_uses(root, ctx.plan.run_id, ())
        # The new archive waits for the next cleanup, even with ttl_days 0.
        done = cleanup.apply(root, cleanup.collect(root, spare=archive_id))
        return cleanup.CleanupResult(False, tuple(done)), notes


def create(ctx: RunContext, *, ttl_days: float | None = None, keep_forever: bool | None = None,
           now: dt.datetime | None = None) -> ArchiveResult:
    """Steps 1-6 of `rlm archive`; the caller holds the run lock and releases it (step 7)."""
    now = now or utc_now()
    lifecycle = ctx.plan.lifecycle
    ttl = float(lifecycle.ttl_days if ttl_days is None else ttl_days)
    forever = bool(lifecycle.keep_forever if keep_forever is None else keep_forever)
    archive_id, meta = build(ctx, ttl_days=ttl, keep_forever=forever, now=now)

    present = [rel for rel in _transient_sources(ctx).values() if ctx.layout.abs(rel).exists()]
    mode = lifecycle.transient if present else "keep"
    tarball = f"{ctx.layout.local_run_rel}/transient-{archive_id}.tar.gz" if mode == "compress" else None
    jsonio.write_json(archived_to_path(ctx), {  # the pointer first: trimming may fail, the archive is complete
        "version": FORMAT_VERSION,
        "run_id": ctx.plan.run_id,
        "archive_id": archive_id,
        "archive_path": archive_rel(archive_id),
        "archived_at": meta["archived_at"],
        "manifest_sha256": meta["manifest_sha256"],
        "transient": {
            "mode": mode,
            "paths": present if mode != "keep" else [],
            "compressed_to": tarball,
        },
    })
    if mode != "keep":
        _trim_transient(ctx, present, tarball)
    transient = ("no logs to trim" if not present else
                 "logs kept (lifecycle.transient: keep)" if mode == "keep" else
                 f"logs compressed to {tarball} (machine-local)" if tarball else
                 "logs removed (never archived: they stay machine-local)")
    swept, notes = _sweep(ctx, archive_id)
    return ArchiveResult(archive_id, archive_rel(archive_id), int(meta["file_count"]),
                         int(meta["retention"]["size_bytes"]), transient, swept, tuple(notes))


