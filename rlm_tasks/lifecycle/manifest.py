"""An archive's manifest: the sha256 of every regular file under its run/ (symlinks and special files are
findings, never followed), the manifest's own digest, checking an archive against both, and listing archives."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from pathlib import Path
from typing import Any, NamedTuple

from rlm_tasks import jsonio
from rlm_tasks.clock import parse_iso, utc_now
from rlm_tasks.config import schema
from rlm_tasks.layout import RUN_ID, RUNS_DIR, archive_root
from rlm_tasks.lifecycle import cleanup

CHUNK = 1 << 20


class VerifyResult(NamedTuple):
    archive_id: str
    file_count: int
    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def intact(self) -> bool:
        return not (self.changed or self.missing or self.extra or self.problems)

    def lines(self) -> list[str]:
        if self.intact:
            return [f"archive {self.archive_id}: intact ({self.file_count} files match the manifest)"]
        out = [f"archive {self.archive_id}: NOT intact"]
        out += [f"  {problem}" for problem in self.problems]
        out += [f"  changed  {p}" for p in self.changed]
        out += [f"  missing  {p}" for p in self.missing]
        out += [f"  extra    {p}" for p in self.extra]
        return out


def files(tree: Path) -> list[Path]:
    """Regular files only: archives never follow a symlink (see not_regular)."""
    return sorted(Path(d) / name for d, _, names in os.walk(tree) for name in names
                  if stat.S_ISREG(os.lstat(Path(d) / name).st_mode))


def not_regular(tree: Path) -> list[str]:
    """Symlinks (also dangling ones, also to directories) and special files under `tree`, one line each."""
    if tree.is_symlink():
        return [f"{tree.name}/ is a symlink (to {os.readlink(tree)})"]
    found = []
    for d, dirs, names in os.walk(tree):
        for name in [*dirs, *names]:
            path = Path(d) / name
            rel = path.relative_to(tree.parent).as_posix()
            if path.is_symlink():
                found.append(f"{rel} is a symlink (to {os.readlink(path)})")
            elif name in names and not stat.S_ISREG(os.lstat(path).st_mode):
                found.append(f"{rel} is not a regular file")
    return sorted(found)


def hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def manifest_of(tree: Path) -> dict[str, str]:
    return {p.relative_to(tree).as_posix(): hash_file(p)[0] for p in files(tree)}


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest itself: kept in meta.json and in the run's archived_to.json, so a manifest edited
    to match an edited file is caught against the copy outside the archive."""
    return hashlib.sha256(jsonio.dumps(manifest).encode("utf-8")).hexdigest()


# What an archive directory may hold besides its manifest's files.
_ARCHIVE_ENTRIES = {"meta.json", "run", cleanup.MARKERS}


def _digest_problems(root: Path, archive_id: str, meta: dict[str, Any]) -> list[str]:
    recorded: dict[str, Any] = meta["manifest"]
    digest = manifest_digest(recorded)
    problems = []
    if meta.get("file_count") != len(recorded):
        problems.append(f"meta.json: file_count is {meta.get('file_count')!r} but the manifest lists "
                        f"{len(recorded)} files (an entry was removed or added)")
    if "manifest_sha256" in meta and meta["manifest_sha256"] != digest:
        problems.append("meta.json: the manifest does not match its recorded digest (manifest_sha256): edited")
    run_id = meta.get("run_id")
    if isinstance(run_id, str) and RUN_ID.fullmatch(run_id):
        pointer_rel = f"{RUNS_DIR}/{run_id}/archived_to.json"
        try:
            pointer = jsonio.read_json(root / pointer_rel, default=None)
        except (OSError, ValueError):
            pointer = None
        if (isinstance(pointer, dict) and pointer.get("archive_id") == archive_id
                and pointer.get("manifest_sha256") != digest):
            problems.append(f"the manifest does not match the digest recorded in {pointer_rel}: "
                            "meta.json was edited after archiving")
    return problems


def verify(root: Path, archive_id: str) -> VerifyResult:
    """Re-hash the archive's files against the manifest in its meta.json; anything else in the archive is a finding."""
    path = cleanup.existing_archive(root, archive_id)
    meta = cleanup.read_meta(path)
    links = tuple(not_regular(path / "run")) if os.path.lexists(path / "run") else ()
    actual = manifest_of(path / "run") if (path / "run").is_dir() and not (path / "run").is_symlink() else {}
    outside = tuple(sorted(f"../{name}" for name in os.listdir(path) if name not in _ARCHIVE_ENTRIES))
    if meta is None or not isinstance(meta.get("manifest"), dict):
        return VerifyResult(archive_id, len(actual), extra=outside,
                            problems=("meta.json is unreadable or has no manifest", *links))
    problems = (*(f"meta.json: {p}" for p in schema.check("archive_meta", meta)), *links,
                *_digest_problems(root, archive_id, meta))
    recorded: dict[str, Any] = meta["manifest"]
    return VerifyResult(
        archive_id,
        len(recorded),
        changed=tuple(sorted(p for p in recorded if p in actual and actual[p] != recorded[p])),
        missing=tuple(sorted(p for p in recorded if p not in actual)),
        extra=tuple(sorted(p for p in actual if p not in recorded)) + outside,
        problems=problems,
    )


def list_lines(root: Path, now: dt.datetime | None = None) -> list[str]:
    """One line per archive: age, retention and who uses it."""
    now = now or utc_now()
    lines = []
    for archive_id in cleanup.archive_ids(root):
        path = archive_root(root) / archive_id
        meta = cleanup.read_meta(path) or {}
        retention = meta.get("retention") or {}
        archived = parse_iso(meta.get("archived_at"))
        age = f"{(now - archived).total_seconds() / 86400:.1f}d" if archived else "?"
        keep = "forever" if retention.get("keep_forever") else f"ttl {retention.get('ttl_days', '?')}d"
        users = cleanup.markers(path)
        used = f", in use by {', '.join(users)}" if users else ""
        lines.append(f"{archive_id}  age {age}, {keep}, {retention.get('size_bytes', '?')} bytes{used}")
    return lines

