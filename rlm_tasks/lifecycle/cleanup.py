"""Retention of archives: in-use markers and TTL cleanup.

An archive is deleted once it is older than its `retention.ttl_days`, unless
`retention.keep_forever` is true or `in_use_by/` holds a marker. Deciding and
deleting happen under .rlm/local/locks/cleanup.lock, taken without waiting: a
second cleanup skips instead of queueing. Markers are written under the same
lock, so an archive is never deleted between "is it in use?" and the marker.
Every decision about an expired archive goes to .rlm/local/cleanup.log, one line
each, and only when it differs from the last line logged for that archive.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from rlm_tasks import jsonio, oslock
from rlm_tasks.clock import iso, parse_iso, utc_now
from rlm_tasks.errors import UserError
from rlm_tasks.fs import append_line, remove_tree
from rlm_tasks.layout import ARCHIVE_DIR, ARCHIVE_ID, CLEANUP_LOCK, RUN_ID, archive_root, cleanup_lock_file, cleanup_log
from rlm_tasks.procs import hostname, pid_alive

MARKERS = "in_use_by"
MARKER_WAIT_SECONDS = 60.0
PARTIAL_PREFIXES = (".tmp~", ".deleting~")
FOREIGN_PARTIAL_HOURS = 24.0
_LOG_LINE = re.compile(r"^\S+ (?P<action>\S+) (?P<id>\S+): (?P<reason>.*)$")


class UnknownArchive(UserError):
    """No archive has this id."""

    exit_code = 2


class CleanupBusy(UserError):
    """Another process held cleanup.lock for longer than we were willing to wait."""

    exit_code = 3


class Decision(NamedTuple):
    archive_id: str
    action: str  # deleted | kept-forever | kept-in-use | kept-unreadable | removed-partial
    reason: str

    def line(self, now: dt.datetime) -> str:
        return f"{iso(now)} {self.action} {self.archive_id}: {self.reason}"


class CleanupResult(NamedTuple):
    skipped: bool
    decisions: tuple[Decision, ...] = ()

    @property
    def deleted(self) -> list[str]:
        return [d.archive_id for d in self.decisions if d.action == "deleted"]


SKIPPED_LINE = f"cleanup skipped: another process is cleaning up (holds {CLEANUP_LOCK})"


# ---- archives on disk -------------------------------------------------------------------------------------

def check_archive_id(archive_id: str) -> str:
    if not ARCHIVE_ID.match(archive_id):
        raise UnknownArchive(f"'{archive_id}' is not an archive id (expected <run_id>-<YYYYMMDDTHHMMSSZ>)")
    return archive_id


def archive_dir(root: Path, archive_id: str) -> Path:
    return archive_root(root) / check_archive_id(archive_id)


def existing_archive(root: Path, archive_id: str) -> Path:
    path = archive_dir(root, archive_id)
    if not (path / "meta.json").is_file():
        known = archive_ids(root)
        hint = f"; archives: {', '.join(known[-5:])}" if known else "; there are no archives"
        raise UnknownArchive(f"no archive '{archive_id}' under {ARCHIVE_DIR}{hint}")
    return path


def archive_ids(root: Path) -> list[str]:
    base = archive_root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if ARCHIVE_ID.match(p.name) and p.is_dir())


def read_meta(path: Path) -> dict[str, Any] | None:
    try:
        data = jsonio.read_json(path / "meta.json")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def markers(path: Path) -> list[str]:
    """Run ids holding an in-use marker on the archive at `path`."""
    folder = path / MARKERS
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# ---- the cleanup lock -------------------------------------------------------------------------------------

@contextlib.contextmanager
def locked(root: Path, wait: float = 0.0) -> Iterator[bool]:
    """Hold cleanup.lock; yields False (and holds nothing) when another process keeps it past `wait` seconds."""
    path = cleanup_lock_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = oslock.OsLock(path)
    try:
        taken = lock.acquire(wait)
    except OSError as exc:
        raise UserError(f"cannot lock {CLEANUP_LOCK}: {oslock.why(exc)}") from None
    if not taken:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


# ---- in-use markers ---------------------------------------------------------------------------------------

def _check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise UserError(f"'{run_id}' is not a run id (lower-case letters, digits, '.', '_', '-')", exit_code=2)
    return run_id


def _linked_out(path: Path) -> str | None:
    """Why no marker may be written or removed here: the archive or its in_use_by/ is a symlink (in_use_by/ stays
    writable, so a worker can replace it), and writing through it would leave the repository."""
    for part in (path, path / MARKERS):
        if part.is_symlink():
            return f"{ARCHIVE_DIR}/{path.name}{'/' + MARKERS if part != path else ''} is a symlink; not followed"
    return None


def _write_marker(path: Path, run_id: str, source: str) -> bool:
    linked = _linked_out(path)
    if linked:
        raise UserError(f"no in-use marker written: {linked}")
    marker = path / MARKERS / run_id
    if marker.exists():
        return False
    jsonio.write_json(marker, {"run_id": run_id, "since": iso(utc_now()), "source": source})
    return True


def use(root: Path, archive_id: str, run_id: str, *, wait: float = MARKER_WAIT_SECONDS) -> bool:
    """Mark the archive in use by `run_id` (True if newly marked); TTL cleanup keeps it while marked."""
    _check_run_id(run_id)
    with locked(root, wait) as got:
        if not got:
            raise CleanupBusy(f"cannot mark '{archive_id}' in use: another process held {CLEANUP_LOCK} for {wait:g}s")
        return _write_marker(existing_archive(root, archive_id), run_id, "manual")


def release(root: Path, archive_id: str, run_id: str) -> bool:
    """Remove the run's marker (True if there was one). No lock needed: fewer markers is never unsafe."""
    _check_run_id(run_id)
    path = existing_archive(root, archive_id)
    linked = _linked_out(path)
    if linked:
        raise UserError(f"no in-use marker removed: {linked}")
    marker = path / MARKERS / run_id
    if not marker.exists():
        return False
    marker.unlink()
    return True


def sync_uses(root: Path, run_id: str, uses: Sequence[str]) -> list[str]:
    """Make the run's automatic markers match `uses:`; call with cleanup.lock held. Returns one line per change."""
    lines: list[str] = []
    wanted = set(uses)
    for archive_id in sorted(wanted):
        path = archive_dir(root, archive_id)
        if not (path / "meta.json").is_file():
            lines.append(f"uses: archive '{archive_id}' not found under {ARCHIVE_DIR}; nothing to mark")
        elif _linked_out(path):
            lines.append(f"uses: no in-use marker written: {_linked_out(path)}")
        elif _write_marker(path, run_id, "uses"):
            lines.append(f"marked archive {archive_id} in use by run {run_id} (uses: in rlm.yaml)")
    for archive_id in archive_ids(root):
        marker = archive_root(root) / archive_id / MARKERS / run_id
        if archive_id in wanted or _linked_out(marker.parent.parent) or not marker.is_file():
            continue
        try:
            source = (jsonio.read_json(marker) or {}).get("source")
        except (OSError, ValueError, AttributeError):
            source = None
        if source == "uses":  # manual markers stay until `rlm archive release`
            marker.unlink(missing_ok=True)
            lines.append(f"released archive {archive_id} (no longer under uses: of run {run_id})")
    return lines


# ---- TTL cleanup ------------------------------------------------------------------------------------------

def _age_days(meta: dict[str, Any], now: dt.datetime) -> float | None:
    archived = parse_iso(meta.get("archived_at"))
    return None if archived is None else (now - archived).total_seconds() / 86400


def _partial_is_abandoned(name: str, path: Path, now: dt.datetime) -> str | None:
    """Why a half-built or half-deleted directory can go, or None while its process may still work on it."""
    parts = name.split("~")
    host, pid = (parts[2], parts[3]) if len(parts) == 4 else ("", "")
    if host == hostname() and pid.isdigit():
        return None if pid_alive(int(pid)) else f"left by pid {pid} on this host, which has ended"
    age_hours = (now.timestamp() - path.stat().st_mtime) / 3600
    if age_hours > FOREIGN_PARTIAL_HOURS:
        return f"left by {pid or 'an unknown pid'} on host {host or 'unknown'} {age_hours:.0f} hours ago"
    return None


def collect(root: Path, now: dt.datetime | None = None, spare: str | None = None) -> list[Decision]:
    """What cleanup would do now (no side effects); `spare` is an archive just made, left to the next cleanup."""
    now = now or utc_now()
    decisions: list[Decision] = []
    base = archive_root(root)
    if not base.is_dir():
        return decisions
    for entry in sorted(base.iterdir()):
        if entry.name.startswith(PARTIAL_PREFIXES) and entry.is_dir():
            why = _partial_is_abandoned(entry.name, entry, now)
            if why:
                decisions.append(Decision(entry.name, "removed-partial", why))
    for archive_id in archive_ids(root):
        if archive_id == spare:
            continue
        path = base / archive_id
        if path.is_symlink():  # an archive is a directory we made: a link is not followed, let alone deleted
            decisions.append(Decision(archive_id, "kept-unreadable", "it is a symlink, not an archive; not followed"))
            continue
        meta = read_meta(path)
        retention = meta.get("retention") if meta else None
        age = _age_days(meta, now) if meta else None
        if not isinstance(retention, dict) or age is None:
            decisions.append(Decision(archive_id, "kept-unreadable", "meta.json is missing or unreadable"))
            continue
        ttl = retention.get("ttl_days")
        # A garbage TTL (NaN, negative, a string, true) must never lead to deletion: keep and say why.
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl < 0:
            decisions.append(Decision(archive_id, "kept-unreadable",
                                      f"meta.json retention.ttl_days is not a finite number >= 0 ({ttl!r})"))
            continue
        if age < 0:
            decisions.append(Decision(archive_id, "kept-unreadable", "meta.json archived_at is in the future"))
            continue
        if age <= ttl:
            continue
        expired = f"age {age:.1f} days > ttl_days {ttl:g}"
        users = markers(path)
        if retention.get("keep_forever") is True:
            decisions.append(Decision(archive_id, "kept-forever", f"keep_forever is true ({expired})"))
        elif users:
            decisions.append(Decision(archive_id, "kept-in-use", f"in use by {', '.join(users)} ({expired})"))
        else:
            decisions.append(Decision(archive_id, "deleted", f"expired: {expired}"))
    return decisions


def _last_logged(root: Path) -> dict[str, tuple[str, str]]:
    try:
        text = cleanup_log(root).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    last: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            last[match["id"]] = (match["action"], _stable(match["reason"]))
    return last


def _delete(root: Path, name: str) -> bool:
    """Rename first, so a half-deleted archive is never taken for an archive."""
    source = archive_root(root) / name
    doomed = archive_root(root) / f".deleting~{name}~{hostname()}~{os.getpid()}"
    try:
        if not name.startswith(PARTIAL_PREFIXES):
            os.chmod(source, stat.S_IRWXU | source.stat().st_mode)  # some systems need it to rename a directory
            os.rename(source, doomed)
            source = doomed
    except FileNotFoundError:
        return False
    remove_tree(source)
    return True


def apply(root: Path, decisions: list[Decision], now: dt.datetime | None = None) -> list[Decision]:
    """Carry out `decisions` (cleanup.lock held) and log them; returns the decisions carried out."""
    now = now or utc_now()
    logged = _last_logged(root) if decisions else {}
    done: list[Decision] = []
    for decision in decisions:
        if decision.action in ("deleted", "removed-partial") and not _delete(root, decision.archive_id):
            continue
        done.append(decision)
        if logged.get(decision.archive_id) != (decision.action, _stable(decision.reason)):
            append_line(cleanup_log(root), decision.line(now))
    return done


def _stable(reason: str) -> str:
    """A kept decision's reason without its ever-growing age, so re-logging only happens on change."""
    return re.sub(r" \(age [0-9.]+ days > ttl_days [0-9.]+\)$", "", reason)


def run(root: Path, *, dry_run: bool = False, now: dt.datetime | None = None) -> CleanupResult:
    """TTL cleanup: skip when another process holds cleanup.lock; `dry_run` only reports."""
    if dry_run:
        return CleanupResult(False, tuple(d for d in collect(root, now) if d.action in ("deleted", "removed-partial")))
    with locked(root) as got:
        if not got:
            return CleanupResult(True)
        return CleanupResult(False, tuple(apply(root, collect(root, now), now)))


def summary_lines(result: CleanupResult, *, dry_run: bool = False, deletions_only: bool = False) -> list[str]:
    if result.skipped:
        return [SKIPPED_LINE]
    shown = [d for d in result.decisions if not deletions_only or d.action in ("deleted", "removed-partial")]
    return [f"{'would delete' if dry_run else d.action} {d.archive_id}: {d.reason}" for d in shown]
