"""`doit forget` and `rlm run --force`: make a fresh task run again, though provenance says it is fresh.

Provenance decides freshness, and a fresh clone (no doit database) must run nothing; so a task
missing from doit's database cannot by itself mean "forgotten". rlm therefore keeps, in doit's own
database, one `rlm-known:<task>` row next to each task row it has seen fresh or finished here:
a task with that row but without its own row was forgotten (`doit forget` removes only the
task's row). Deleting the database or `doit forget --all` removes both, and provenance decides again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from doit.dependency import SqliteDB

KNOWN = "rlm-known:"
EMPTY = "{}"  # doit's JSON codec: a task with no saved values


def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), timeout=30)
    conn.execute("create table if not exists doit (task_id text not null primary key, task_data json)")
    return conn


def set_aside_if_unreadable(db: Path) -> Path | None:
    """doit's database is only a cache: a corrupt one (not a database, malformed) is renamed out of doit's
    way, so doit builds a new one, instead of failing every run. Returns where it went."""
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            conn.execute("select count(*) from sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" not in str(exc) and "malformed" not in str(exc):
            return None  # locked, missing, unreadable for now: doit says so itself
        dest = db.with_name(f"{db.name}.unreadable-{int(time.time())}")
        os.replace(db, dest)
        return dest
    return None


def rows(db: Path) -> frozenset[str]:
    """The rows of doit's database as a run loads (none when it has none or cannot be read): a run keeps them
    (run.runstate.Run.doit_rows) for forgotten() and, at its end, remember()."""
    if not db.exists():
        return frozenset()
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            found = frozenset(row[0] for row in conn.execute("select task_id from doit"))
        finally:
            conn.close()
    except sqlite3.Error:
        return frozenset()  # no table yet, or a damaged cache: provenance decides
    return found


def forgotten(rows: frozenset[str]) -> frozenset[str]:
    """Task names rlm saw fresh here whose doit record was removed since (`doit forget`, `rlm run --force`)."""
    return frozenset(name[len(KNOWN):] for name in rows if name.startswith(KNOWN) and name[len(KNOWN):] not in rows)


def remember(db: Path, names: Iterable[str], seen: frozenset[str] = frozenset()) -> None:
    """After a run: these tasks are fresh here; give each a doit record and a known row (new rows only).

    It runs at the end of a run, where memory peaks: after a first run of 10,000 tasks that is 20,000 rows,
    so the names are never gathered into sets, and `insert or ignore` leaves the rows already there as they are.
    """
    names = sorted(set(names))
    if all(name in seen and KNOWN + name in seen for name in names):
        return  # every row was there when the run started, and doit removes rows only of tasks that ran
    conn = _connect(db)
    try:
        conn.execute("pragma cache_size = -256")  # KiB: the rows are written once, nothing is read back
        with conn:
            conn.executemany("insert or ignore into doit values (?, ?)",
                             ((row, EMPTY) for name in names for row in (name, KNOWN + name)))
    finally:
        conn.close()


def force(db: Path, names: Iterable[str]) -> None:
    """Mark tasks forgotten, as `doit forget` does, also when this machine never ran them."""
    names = sorted(set(names))
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = _connect(db)
    try:
        with conn:
            conn.executemany("delete from doit where task_id = ?", [(name,) for name in names])
            conn.executemany("insert or ignore into doit values (?, ?)", [(KNOWN + name, EMPTY) for name in names])
    finally:
        conn.close()


def _identity(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def survive_removal(backend: Any, db_rel: str, write: Callable[[str], None]) -> None:
    """doit writes its database once, when the run ends, through the connection it opened at the start. A worker
    that removed .rlm/local/ meanwhile leaves that an unlinked file SQLite will not write ("readonly database").
    The database is a cache: what doit holds goes to a new one at the same path, with one line, not a traceback."""
    if not isinstance(backend, SqliteDB):
        return
    dump, opened = backend.dump, _identity(backend.name)

    def dump_or_rebuild() -> None:
        try:
            dump()
            return
        except sqlite3.OperationalError:
            if _identity(backend.name) == opened:
                raise  # the same file: doit's own error stands
        with contextlib.suppress(sqlite3.Error):
            backend._conn.close()
        Path(backend.name).parent.mkdir(parents=True, exist_ok=True)
        backend._conn = backend._sqlite3(backend.name)
        backend._dirty = set(backend._cache)
        dump()
        write(f"rlm: {db_rel} was removed during the run and is written anew (a cache: provenance decides "
              "what is fresh)\n")

    backend.dump = dump_or_rebuild
