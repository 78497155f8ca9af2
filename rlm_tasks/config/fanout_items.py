"""Where a fan-out's items come from: a glob of repository files, an inline list, or an items file (JSON or
YAML); each bounded, confined to the repository, and recorded as a source of the expansion (its cache key)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from rlm_tasks.config import ownership, yamlpos
from rlm_tasks.config.schema import describe
from rlm_tasks.config.yamlpos import KeyPath

MAX_ITEMS = 10_000  # per fan-out: a glob that matches a whole checkout is a mistake, not a plan
MAX_ITEMS_FILE_BYTES = 10 * 1024 * 1024
SOURCES = ("files", "items", "items_file")


class Collector(Protocol):
    """What reading items records (foreach.Expansion): problems, the sources read, each glob's matches."""

    problems: list[tuple[KeyPath, str]]
    sources: list[Any]
    globbed: list[tuple[KeyPath, list[str]]]
    max_files: int


def read_items(out: Collector, at: KeyPath, spec: dict[str, Any], root: Path) -> list[Any] | None:
    """The items of one `foreach:` block (`spec`, at `at`), or None when a problem was recorded in `out`."""
    given = [key for key in SOURCES if key in spec]
    if len(given) != 1:
        said = " and ".join(given) if given else "none"
        out.problems.append((at, f"give exactly one of files, items, items_file (got {said})"))
        return None
    if "exclude" in spec and given[0] != "files":
        out.problems.append(((*at, "exclude"), "exclude applies to files only"))
        return None
    if given[0] == "items":
        items: list[Any] | None = list(spec["items"])  # part of rlm.yaml: no source of its own
    elif given[0] == "files":
        items = _glob(out, at, spec, root)
    else:
        items = _read_items_file(out, (*at, "items_file"), spec["items_file"], root)
    if items is None:
        return None
    if len(items) > MAX_ITEMS:
        out.problems.append(((*at, given[0]), f"{len(items)} items, more than the {MAX_ITEMS} a fan-out may have; "
                                              "narrow it (exclude:, a smaller glob) or split it"))
        return None
    for i, item in enumerate(items):
        if not (isinstance(item, str) and item) and not (isinstance(item, dict) and item):
            where = (*at, "items", i) if given[0] == "items" else (*at, given[0])
            out.problems.append((where, f"item {i} must be a non-empty string or mapping, got {describe(item)}"))
            return None
    return items


def _escapes(value: str) -> bool:
    normal = posixpath.normpath(value)
    return PurePosixPath(value).is_absolute() or normal == ".." or normal.startswith("../") or value[1:2] == ":"


def _inside(root: Path, rel: str) -> bool:
    """The file, after every symlink, is inside the repository."""
    real = os.path.realpath(os.path.join(root, rel))
    return real == str(root) or real.startswith(str(root) + os.sep)


def _glob(out: Collector, at: KeyPath, spec: dict[str, Any], root: Path) -> list[Any] | None:
    patterns = [spec["files"]] if isinstance(spec["files"], str) else list(spec["files"])
    excludes = [spec["exclude"]] if isinstance(spec.get("exclude"), str) else list(spec.get("exclude") or [])
    for key, values in (("files", patterns), ("exclude", excludes)):
        for i, pattern in enumerate(values):
            if isinstance(pattern, str) and "\0" in pattern:
                return None  # config/values.py reports the NUL; no file system call takes such a path
            if not pattern or _escapes(pattern):
                where = (*at, key) if isinstance(spec[key], str) else (*at, key, i)
                out.problems.append((where, f"{key} pattern {json.dumps(pattern)} must be relative to the "
                                            "repository root and stay inside it"))
                return None
    wanted = [ownership.compile_exact(p) for p in patterns]
    # exclude: a pattern also drops everything beneath what it matches (`src/vendor` drops the directory)
    unwanted = [ownership.compile_pattern(p) for p in excludes]
    found: list[str] = []
    for rel in ownership.repo_files(root, patterns):  # never walks .git/ or .rlm/
        if any(w.match(rel) for w in wanted) and not any(u.match(rel) for u in unwanted):
            path = os.path.join(root, rel)
            # the walk never enters a linked directory: only a linked file can lead out
            if os.path.islink(path) and not _inside(root, rel):
                out.problems.append(((*at, "files"), f"'{rel}' is a symlink out of the repository"))
                return None
            if os.path.isfile(path):
                found.append(rel)
        if len(found) > out.max_files:
            out.problems.append(((*at, "files"), f"matches more than budget.max_watch_files = {out.max_files:,} "
                                                 "files; narrow it (exclude:, a smaller glob) or split it"))
            return None
    out.sources.append(["files", found])
    out.globbed.append((at, found))
    return list(found)


def _read_items_file(out: Collector, at: KeyPath, rel: str, root: Path) -> list[Any] | None:
    if "\0" in rel:
        return None  # config/values.py reports the NUL; no file system call takes such a path
    if _escapes(rel):
        out.problems.append((at, f"items_file '{rel}' must be relative to the repository root and stay inside it"))
        return None
    path = root / rel
    if not _inside(root, rel):
        out.problems.append((at, f"items_file '{rel}' is a symlink out of the repository"))
        return None
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read, a device never end it
            out.problems.append((at, f"items_file '{rel}' is not a regular file"))
            return None
        if st.st_size > MAX_ITEMS_FILE_BYTES:
            out.problems.append((at, f"items_file '{rel}' is larger than {MAX_ITEMS_FILE_BYTES} bytes"))
            return None
        raw = path.read_bytes()
    except FileNotFoundError:
        out.problems.append((at, f"items_file '{rel}' does not exist"))
        return None
    except OSError as exc:
        out.problems.append((at, f"items_file '{rel}' cannot be read: {exc.strerror or exc}"))
        return None
    out.sources.append(["items_file", rel, hashlib.sha256(raw).hexdigest()])
    try:
        text = raw.decode("utf-8")
        items = _parse_items(text, rel)
        bad = next(_unusable(items), None)
    except (UnicodeDecodeError, ValueError) as exc:
        out.problems.append((at, f"items_file '{rel}': {exc}"))
        return None
    except RecursionError:
        out.problems.append((at, f"items_file '{rel}': nested too deeply"))
        return None
    if bad is not None:
        out.problems.append((at, f"items_file '{rel}': {bad}"))
        return None
    if not isinstance(items, list):
        out.problems.append((at, f"items_file '{rel}' must hold a list of strings or mappings, "
                                 f"got {describe(items)}"))
        return None
    return items


def _unusable(value: Any) -> Iterator[str]:
    """What rlm.yaml itself may not hold either: NUL characters (no path or id can carry one), NaN/±Infinity."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _unusable(key)
            yield from _unusable(item)
    elif isinstance(value, list):
        for item in value:
            yield from _unusable(item)
    elif isinstance(value, str) and "\0" in value:
        yield f"{json.dumps(value)} contains a NUL character"
    elif isinstance(value, float) and not math.isfinite(value):
        yield f"{value} is not allowed: numbers must be finite"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_items(text: str, rel: str) -> Any:
    if rel.endswith(".json"):
        try:
            return json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None
    try:
        return yamlpos.load(text).data
    except yamlpos.YamlSyntaxError as exc:
        raise ValueError(f"line {exc.position.line} column {exc.position.column}: not valid YAML: {exc}") from None

