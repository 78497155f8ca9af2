"""A local speed-up cache, never a source of truth: what a no-op `doit` or `rlm check` would recompute.

- The validated rlm.yaml, keyed by the file's bytes and the code reading it:
  an unchanged plan skips YAML parsing, JSON Schema and semantic checks.
- The prompt, contract and agent digests per task, keyed by the plan and the
  templates: an unchanged plan renders nothing to tell fresh from stale.
- File digests (inputs, reports) and report validity, keyed by a stat
  signature (mtime, ctime, size, inode), like doit's own checker. A file
  changed less than RACY_SECONDS before it was hashed is not cached, so an
  edit within the filesystem's timestamp granularity cannot hide (git's
  "racy clean" rule).

- Marks: a digest of the stat signatures of the files something was known
  to hold for (every task settled, plan.json current, the inventory current),
  so a no-op checks one stat per file and reads no digest.

It lives in `.rlm/local/cache/` (keep it out of git, like doit's database): the
plan and the marks in `<config digest>.json`, read by every run, and the
digests in `<config digest>.digests.json`, read only when a task has to be
asked whether it is fresh. A missing, corrupt or outdated cache only costs time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import marshal
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rlm_tasks import jsonio, layout
from rlm_tasks.resources import PACKAGE_DIR, SCHEMA_DIR
from rlm_tasks.state import reports
from rlm_tasks.state.provenance import sha256_file

FORMAT_VERSION = 2  # 2: digests beside the plan; marks are digests; a report check says whether it is partial
RACY_SECONDS = 2.0

Signature = list[int]


def stat_signature(path: str | Path) -> tuple[Signature | None, float]:
    """([mtime_ns, ctime_ns, size, inode] or None when missing, the newest of mtime/ctime in seconds)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None, 0.0
    except OSError as exc:  # a symlink loop is no file either
        if exc.errno == errno.ELOOP:
            return None, 0.0
        raise
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino], max(st.st_mtime, st.st_ctime)


def tree_signature(directory: Path, suffixes: tuple[str, ...]) -> list[Any]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return [str(directory), None]
    out: list[Any] = [str(directory)]
    for entry in entries:
        if entry.name.endswith(suffixes):
            st = entry.stat()
            out.append([entry.name, st.st_mtime_ns, st.st_ctime_ns, st.st_size])
    return out


def code_signature() -> list[Any]:
    """The code and schema that validate and render: a change (an upgrade, a local edit) invalidates the cache."""
    rooms = sorted(p for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file())
    return [FORMAT_VERSION, *(tree_signature(d, (".py",)) for d in [PACKAGE_DIR, *rooms]),
            tree_signature(SCHEMA_DIR, (".json",))]


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(root: Path, config_path: Path) -> Path:
    return root / layout.CACHE_DIR / f"{hashlib.sha256(str(config_path).encode()).hexdigest()[:16]}.json"


def signatures_digest(signatures: Sequence[Signature | None]) -> str:
    """What a mark records of its files' signatures: a digest (a list of 40,000 of them is 2 MB to parse).

    marshal's version 2 (no back-references) depends only on the values, and is 5x faster than repr."""
    return hashlib.sha256(marshal.dumps(list(signatures), 2)).hexdigest()


def _well_formed(data: dict[str, Any]) -> bool:
    keys = (data.get("plan_key"), data.get("derived_key"))
    marks = data.get("marks") or {}
    return (all(isinstance(k, (str, type(None))) for k in keys)
            and isinstance(marks, dict) and all(isinstance(m, str) for m in marks.values())
            and isinstance(data.get("mark_values") or {}, dict))


def _well_formed_digests(data: dict[str, Any]) -> bool:
    files = data.get("files") or {}
    return (isinstance(data.get("derived_key"), (str, type(None))) and isinstance(data.get("derived") or {}, dict)
            and isinstance(files, dict)
            and all(isinstance(e, list) and len(e) == 3 and isinstance(e[0], list) and isinstance(e[1], str)
                    and (e[2] is None or (isinstance(e[2], list) and len(e[2]) == 3)) for e in files.values()))


def _read(path: Path, well_formed: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION or not well_formed(data):
        return {}  # another version, or the right JSON in the wrong shape: discarded, it only costs time
    return data


class Cache:
    """Two files: the plan and the marks, read by every run; and the digests (derived, files) beside it, read
    only by a run that has to ask a task whether it is fresh (a settled no-op never does)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digests_path = path.with_name(f"{path.stem}.digests.json")
        self._lock = threading.RLock()
        self._dirty = False  # the plan or the marks changed
        self._digests_dirty = False
        data = _read(self.path, _well_formed)
        self.plan_key: str | None = data.get("plan_key")
        self.plan_data: Any = data.get("plan")
        self.plan_sources: str = str(data.get("plan_sources") or "")  # foreach: the files the plan expanded
        self.plan_expansion: Any = data.get("plan_expansion")  # and what it expanded to
        self.derived_key: str | None = data.get("derived_key")
        self.marks: dict[str, str] = data.get("marks") or {}
        self.mark_values: dict[str, Any] = data.get("mark_values") or {}  # what was known with a mark
        self._derived: dict[str, Any] | None = None
        self._files: dict[str, list[Any]] | None = None

    def _load_digests(self) -> None:
        with self._lock:
            if self._files is None:
                data = _read(self.digests_path, _well_formed_digests)
                # derived digests under another plan or templates are of no use; file digests carry their own key
                self._derived = (data.get("derived") or {}) if data.get("derived_key") == self.derived_key else {}
                self._files = data.get("files") or {}

    @property
    def derived(self) -> dict[str, Any]:
        if self._derived is None:
            self._load_digests()
        assert self._derived is not None
        return self._derived

    @property
    def files(self) -> dict[str, list[Any]]:
        if self._files is None:
            self._load_digests()
        assert self._files is not None
        return self._files

    # the validated plan
    def validated(self, key: str) -> Any:
        if self.plan_key != key:
            return None
        return json.loads(self.plan_data) if isinstance(self.plan_data, _Encoded) else self.plan_data

    def set_validated(self, key: str, data: Any, sources: str = "", expansion: Any = None) -> None:
        """Kept as its JSON text until saved: the parsed rlm.yaml of 10,000 tasks is 6 MB of objects, its text 0.7."""
        try:
            encoded = _Encoded(_compact(data))
        except (TypeError, ValueError):
            return  # not JSON-able (cannot happen for a valid plan): just do not cache
        with self._lock:
            self.plan_key, self.plan_data, self.plan_sources, self._dirty = key, encoded, sources, True
            self.plan_expansion = expansion

    # digests derived from the plan and the templates
    def bind_derived(self, key: str) -> None:
        with self._lock:
            if self.derived_key != key:
                self.derived_key, self.marks, self.mark_values, self._dirty = key, {}, {}, True
                self._derived, self._digests_dirty = {}, True
                if self._files is None:
                    self._files = _read(self.digests_path, _well_formed_digests).get("files") or {}

    def get_derived(self, name: str) -> Any:
        return self.derived.get(name)

    def set_derived(self, name: str, value: Any) -> None:
        with self._lock:
            if self.derived.get(name) != value:
                self.derived[name] = value
                self._digests_dirty = True

    # marks: "these files were in this state when X was known to hold"
    def mark_holds(self, name: str, paths: Sequence[str | Path]) -> bool:
        return self.mark_signatures(name, paths) is not None

    def mark_signatures(self, name: str, paths: Sequence[str | Path]) -> list[Signature | None] | None:
        """The stat signatures of `paths` when they are those the mark recorded, else None."""
        recorded = self.marks.get(name)
        if recorded is None:
            return None
        signatures = [stat_signature(p)[0] for p in paths]
        return signatures if signatures_digest(signatures) == recorded else None

    def mark_is(self, name: str, signatures: Sequence[Signature | None]) -> bool:
        """The mark recorded exactly these signatures (the caller took them)."""
        recorded = self.marks.get(name)
        return recorded is not None and recorded == signatures_digest(signatures)

    def mark_value(self, name: str) -> Any:
        return self.mark_values.get(name)

    def set_mark(self, name: str, paths: Sequence[str | Path], outputs: Sequence[str | Path] = (),
                 value: Any = None) -> None:
        """Record `paths` (inputs: only when none changed within RACY_SECONDS) and `outputs` (ours, any age),
        and `value`: what was known while they were so (mark_value)."""
        now = time.time()
        signatures = []
        for path in paths:
            signature, changed = stat_signature(path)
            if signature is not None and now - changed < RACY_SECONDS:
                return  # a missing input is a state like any other
            signatures.append(signature)
        for path in outputs:
            signature, _ = stat_signature(path)
            if signature is None:
                return
            signatures.append(signature)
        with self._lock:
            self.marks[name] = signatures_digest(signatures)
            if value is None:
                self.mark_values.pop(name, None)
            else:
                self.mark_values[name] = value
            self._dirty = True

    # file digests and report checks, by stat signature
    def _entry(self, path: str | Path, rel: str) -> tuple[list[Any] | None, Signature | None, float]:
        signature, changed = stat_signature(path)
        cached = self.files.get(rel)
        if signature is not None and cached is not None and cached[0] == signature:
            return cached, signature, changed
        return None, signature, changed

    def _store(self, rel: str, entry: list[Any], changed: float) -> None:
        if time.time() - changed < RACY_SECONDS:
            return
        with self._lock:
            self.files[rel] = entry
            self._digests_dirty = True

    def file_sha(self, path: str | Path, rel: str) -> str | None:
        cached, signature, changed = self._entry(path, rel)
        if cached is not None:
            return str(cached[1])
        sha = sha256_file(Path(path))
        if signature is not None and sha is not None:
            self._store(rel, [signature, sha, None], changed)
        return sha

    def report_check(self, path: Path, rel: str, sections: tuple[str, ...]) -> tuple[str | None, str | None, bool]:
        """(why the report is not acceptable or None, its sha256 or None, whether an acceptable one is partial)."""
        key = list(sections)
        cached, signature, changed = self._entry(path, rel)
        if cached is not None and cached[2] is not None and cached[2][0] == key:
            return cached[2][1], str(cached[1]), bool(cached[2][2])
        problem, partial = reports.inspect(path, sections)
        if signature is None:
            return problem, None, partial
        sha = sha256_file(path)
        if sha is not None:
            self._store(rel, [signature, sha, [key, problem, partial]], changed)
        return problem, sha, partial

    def save(self) -> None:
        with self._lock:
            main = digests = None
            if self._dirty:
                main = {"version": FORMAT_VERSION, "plan_key": self.plan_key, "plan": self.plan_data,
                        "plan_sources": self.plan_sources, "plan_expansion": self.plan_expansion,
                        "derived_key": self.derived_key, "marks": dict(self.marks),
                        "mark_values": dict(self.mark_values)}
            if self._digests_dirty:
                digests = {"version": FORMAT_VERSION, "derived_key": self.derived_key,
                           "derived": dict(self.derived), "files": dict(self.files)}
            self._dirty = self._digests_dirty = False
        # compact: read on every run and never diffed; a read-only checkout runs, only slower
        for path, data in ((self.digests_path, digests), (self.path, main)):
            if data is not None:
                with contextlib.suppress(OSError):
                    jsonio.write_text_atomic(path, _compact_pieces(data), durable=False)


class _Encoded(str):
    """A value already encoded as compact JSON."""


def _compact(value: Any) -> str:
    return value if isinstance(value, _Encoded) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _compact_pieces(data: dict[str, Any], depth: int = 2) -> Iterator[str]:
    """Compact JSON of `data`, one entry at a time down to `depth` levels of mappings: a 10,000-task cache as
    one string (and the C encoder's list of its pieces) was a tenth of a first run's peak memory."""
    yield "{"
    for i, key in enumerate(sorted(data)):
        value = data[key]
        yield f"{',' if i else ''}{json.dumps(key)}:"
        if depth > 1 and type(value) is dict:
            yield from _compact_pieces(value, depth - 1)
        else:
            yield _compact(value)
    yield "}"
