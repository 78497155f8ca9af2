"""Every JSON file the tool wrote under a `.rlm/` folder, checked against its schema (conftest runs it after
every test, so every scenario of the suite is covered).

A file the tool writes in one of its own folders with no schema here is a failure too: it has no schema.
Tests that write state files by hand (partial, or broken on purpose) say so with `@pytest.mark.hand_made_state`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rlm_tasks.config import schema

# repo-relative pattern under one run folder (`.rlm/runs/<id>/` or an archive's `run/`) → schema name
_RUN_FILES = [
    (r"plan\.json", "plan"),
    (r"provenance\.json", "provenance"),
    (r"deferred\.json", "deferred"),
    (r"final\.json", "final"),
    (r"archived_to\.json", "archived_to"),
    (r"reduce_state\.json", "reduce_state"),
    (r"artifacts/attempts/[^/]+\.json", "attempts"),
    (r"artifacts/plan\.iter-\d+\.json", "plan"),
    (r"artifacts/history/[^/]+/[^/]+\.provenance\.json", "history_provenance"),
]
_LOCAL_RUN_FILES = [
    (r"reduce_state\.local\.json", "reduce_state_local"),
    (r"inflight\.json", "inflight"),
    (r"drift_baseline\.json", "drift_baseline"),
    (r"detached\.json", "detached"),
    (r"logs/[^/]+\.attempt-\d+\.usage\.json", "usage"),
    (r"logs/[^/]+\.worker-usage\.json", None),  # a worker's own file: checked when read (usage_file)
    (r"logs/[^/]+\.events\.jsonl", None),
]
_LOCAL_FILES = [
    (r"cache/[^/]+\.digests\.json", "cache_digests"),
    (r"cache/[^/]+\.json", "cache"),
    (r"locks/[^/]+\.holder\.json", "lock_holder"),
]
_ARCHIVE_FILES = [
    (r"meta\.json", "archive_meta"),
    (r"in_use_by/[^/]+", "in_use_marker"),
]


def _schema_for(rel: str) -> tuple[bool, str | None]:
    """(a file of the tool's own places, its schema or None) for a path relative to `.rlm/`."""
    tables: list[tuple[str, list[tuple[str, str | None]]]] = [
        (r"runs/[^/]+/", _RUN_FILES),
        (r"local/runs/[^/]+/", _LOCAL_RUN_FILES),
        (r"local/", _LOCAL_FILES),
        (r"archive/[^/]+/run/", _RUN_FILES),
        (r"archive/[^/]+/", _ARCHIVE_FILES),
    ]
    for prefix, table in tables:
        for pattern, name in table:
            if re.fullmatch(prefix + pattern, rel):
                return name is not None, name
    # the tool's own top-level places: a JSON file there without a pattern above has no schema
    own = re.fullmatch(r"(runs/[^/]+|local/runs/[^/]+|local|local/cache|local/locks|archive/[^/]+)/[^/]+\.json", rel)
    return own is not None, None


def problems(root: Path) -> list[str]:
    """Every schema violation (and JSON file without a schema) of the `.rlm/` folders under `root`."""
    found: list[str] = []
    for state in root.rglob(".rlm"):
        if not state.is_dir() or state.is_symlink():
            continue
        for path in sorted(state.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(state).as_posix()
            if rel.endswith(".tmp") or "/.tmp" in rel or path.name.startswith("."):
                continue
            own, name = _schema_for(rel)
            if name is None:
                if own:
                    found.append(f"{path}: written by rlm with no schema in tests/state_schemas.py")
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                found.append(f"{path}: not JSON: {exc}")
                continue
            found += [f"{path}: {name}.schema.json: {p}" for p in schema.check(name, data)]
    return found
