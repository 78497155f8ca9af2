"""Digests, provenance.json and freshness: the source of truth for what needs to run.

A task is fresh when its report exists, passes validation and every digest
recorded before its worker started equals today's. Provenance is written
last, after the report validated, so it doubles as the completion marker.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from rlm_tasks import jsonio
from rlm_tasks.errors import UserError
from rlm_tasks.state import journal, reports
from rlm_tasks.vocabulary import State

FORMAT_VERSION = 1
COMPACT_AFTER_LINES = 1000  # and at least as many lines as the plan has tasks

REASONS = {
    "prompt": "prompt_changed",
    "contract": "contract_changed",
    "agent": "agent_changed",
    "inputs": "input_changed",
}


PATHS_NAMED = 3  # input_changed names this many paths, then "and N more"


class Freshness(NamedTuple):
    state: State
    reasons: tuple[str, ...] = ()
    detail: str | None = None  # why: the invalid report's problem, the changed inputs, the running attempt
    upstream: tuple[str, ...] = ()  # doit names of the dependencies that are not done (upstream_stale)

    @property
    def fresh(self) -> bool:
        return self.state is State.FRESH


class Digests(NamedTuple):
    prompt: str
    contract: str
    agent: str
    inputs: dict[str, str | None]

    def as_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "contract": self.contract, "agent": self.agent, "inputs": dict(self.inputs)}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_json(data: Any) -> str:
    return sha256_text(json.dumps(data, sort_keys=True, separators=(",", ":")))


def sha256_file(path: Path) -> str | None:
    """Digest of a file's content, None when it does not exist or is no regular file (a FIFO would block the
    read for ever, a symlink loop cannot be opened: workers can leave either where an input was)."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        for block in iter(lambda: handle.read(1 << 16), b""):  # 1 MiB reads cost an mmap each
            digest.update(block)
    return digest.hexdigest()


class ProvenanceError(UserError):
    """provenance.json cannot be read."""


class ProvenanceStore:
    """provenance.json of one run, with its journal; safe to update from the worker threads of one process.

    A finished (or restarted) task costs one line appended to provenance.journal.jsonl and an
    fsync, whatever the plan's size; provenance.json is rewritten whole only when the journal
    outgrows the plan (amortised O(1) per task) and when a run ends (`compact`), so the committed
    form is one reviewable file. Readers load provenance.json and replay the journal, so a run
    killed at any point loses only the tasks still running.

    Readers never wait for a write in progress: the entries are guarded by a lock held only
    for dict operations, and the journal by another. Lines that arrive while one append is under
    way share the next append and fsync; `record`/`forget` return once their line is on disk.
    """

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.journal_path = path.with_name(f"{path.stem}.journal.jsonl")
        self.run_id = run_id
        self._lock = threading.Lock()  # the entries and the pending lines
        self._write_lock = threading.Lock()  # the files
        # each entry as its compact JSON: 0.7 KB instead of 1.7 KB of dicts and strings, 10 MB at 10,000 tasks
        self._entries: dict[str, bytes] | None = None
        self._pending: list[bytes] = []
        self._changes = 0  # how many changes were made
        self._written = 0  # how many of them are on disk
        self._journal_lines = 0
        self._appender = journal.Appender(self.journal_path)
        # asked before every write: a reason not to write (HEAD moved under a run), remembered in `refused`
        self.guard: Callable[[], str | None] | None = None
        self.refused: str | None = None

    def _load(self) -> dict[str, bytes]:
        if self._entries is None:
            try:
                data = jsonio.read_json(self.path, default={}, share_strings=True)
            except json.JSONDecodeError as exc:
                raise ProvenanceError(f"{self.path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
            except ValueError as exc:  # NaN/Infinity: not JSON
                raise ProvenanceError(f"{self.path}: not valid JSON: {exc}") from None
            entries = _entries_of(self.path, data)
            try:
                ops = journal.read(self.journal_path)
            except journal.JournalError as exc:
                raise ProvenanceError(str(exc)) from None
            for op in ops:
                _apply(entries, op)
            self._entries = {worker_id: pack(entry) for worker_id, entry in entries.items()}
            self._journal_lines = len(ops)
        return self._entries

    def get(self, worker_id: str) -> dict[str, Any] | None:
        """A task's entry (a copy of its own: changing it changes nothing here), or None."""
        with self._lock:
            packed = self._load().get(worker_id)
        return None if packed is None else unpack(packed)

    def entries(self) -> dict[str, dict[str, Any]]:
        return dict(self.items())

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(worker id, entry), one entry unpacked at a time."""
        with self._lock:
            packed = list(self._load().items())
        for worker_id, entry in packed:
            yield worker_id, unpack(entry)

    def record(self, worker_id: str, entry: dict[str, Any]) -> None:
        line = journal.line({"op": "record", "worker_id": worker_id, "entry": entry})
        with self._lock:
            self._load()[worker_id] = pack(entry)
            mine = self._queue(line)
        self._flush(mine)

    def forget(self, worker_id: str) -> None:
        """Drop a task's completion marker before its worker starts again."""
        with self._lock:
            if self._load().pop(worker_id, None) is None:
                return
            mine = self._queue(journal.line({"op": "forget", "worker_id": worker_id}))
        self._flush(mine)

    def _queue(self, line: bytes) -> int:
        self._pending.append(line)
        self._changes += 1
        return self._changes

    def _flush(self, change: int) -> None:
        with self._write_lock:
            if self._written >= change:
                return  # an append that started after our change already put it on disk
            with self._lock:
                lines, self._pending, upto = self._pending, [], self._changes
                size = len(self._load())
            if self._refusing():
                self._written = upto  # never on this branch's disk
                return
            self._appender.append(b"".join(lines))
            self._written = upto
            self._journal_lines += len(lines)
            if self._journal_lines > max(COMPACT_AFTER_LINES, size):
                self._compact_locked()

    def compact(self) -> bool:
        """Fold the journal into provenance.json; False when there was no journal to fold."""
        with self._write_lock:
            if self._entries is None and not self.journal_path.exists():
                return False  # nothing to fold, and a no-op run never needs to read provenance.json
            with self._lock:
                self._load()
            if not self._journal_lines and not self.journal_path.exists():
                return False
            self._compact_locked()
            return True

    def _refusing(self) -> bool:
        if self.refused is None and self.guard is not None:
            self.refused = self.guard()
        return self.refused is not None

    def _compact_locked(self) -> None:
        if self._refusing():
            return
        with self._lock:
            snapshot = dict(self._load())
        self._write(snapshot)
        self._appender.close()
        self.journal_path.unlink(missing_ok=True)  # after the write: a crash in between replays what it holds
        self._journal_lines = 0

    def _write(self, entries: dict[str, bytes]) -> None:
        """`jsonio.write_json` of the whole file, byte for byte, one entry unpacked and indented at a time."""
        jsonio.write_text_atomic(self.path, _file_pieces(self.run_id, entries))


def pack(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def unpack(packed: bytes) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(packed)
    return entry


def _file_pieces(run_id: str, entries: dict[str, bytes]) -> Iterator[str]:
    """provenance.json as jsonio.dumps writes it (keys sorted, indent 2): an entry nested two levels deep is its
    own indented JSON with every line break followed by four more spaces (JSON text has no raw line breaks)."""
    yield f'{{\n  "run_id": {json.dumps(run_id, ensure_ascii=False)},\n  "tasks": '
    if not entries:
        yield "{}"
    for i, worker_id in enumerate(sorted(entries)):
        text = json.dumps(unpack(entries[worker_id]), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        key = json.dumps(worker_id, ensure_ascii=False)
        yield f'{"{" if i == 0 else ","}\n    {key}: ' + text.replace("\n", "\n    ")
    if entries:
        yield "\n  }"
    yield f',\n  "version": {FORMAT_VERSION}\n}}\n'


def _entries_of(path: Path, data: Any) -> dict[str, dict[str, Any]]:
    """The task entries, after a check of the shape freshness relies on: well-formed JSON of the wrong shape
    (a hand edit, a bad merge, a worker) is one clear error, never a crash and never a silent 'fresh'."""
    if data == {}:
        return {}
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, dict):
        raise ProvenanceError(f"{path}: wrong shape: expected an object with a 'tasks' object; "
                              "fix it or delete it (every task then runs again)")
    for worker_id, entry in tasks.items():
        problem = _entry_problem(entry)
        if problem:
            raise ProvenanceError(f"{path}: tasks.{worker_id}: wrong shape: {problem}; "
                                  "fix it or delete it (every task then runs again)")
    return tasks


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "expected an object"
    digests = entry.get("digests", {})  # missing: nothing matches, the task is stale
    if not isinstance(digests, dict):
        return "'digests' is not an object"
    if not all(isinstance(digests.get(key), (str, type(None))) for key in ("prompt", "contract", "agent")):
        return "a digest is not a string"
    if not isinstance(digests.get("inputs", {}), dict):
        return "'digests.inputs' is not an object"
    if not isinstance(entry.get("report_sha256"), (str, type(None))):
        return "'report_sha256' is not a string"
    return None


def _apply(entries: dict[str, dict[str, Any]], op: dict[str, Any]) -> None:
    worker_id = op.get("worker_id")
    if not isinstance(worker_id, str):
        return
    if op.get("op") == "record" and _entry_problem(op.get("entry")) is None:
        entries[worker_id] = op["entry"]
    elif op.get("op") == "forget":
        entries.pop(worker_id, None)


def freshness(report: Path, required_sections: tuple[str, ...], entry: dict[str, Any] | None,
              current: Digests, known: tuple[str | None, str | None] | None = None) -> Freshness:
    """`known`: (problem, sha256) of the report when the caller already has them (cache.Cache.report_check)."""
    problem = reports.problem(report, required_sections) if known is None else known[0]
    if problem == reports.NO_REPORT:
        return Freshness(State.MISSING)
    if problem is not None:
        return Freshness(State.INVALID, detail=problem)
    if entry is None:
        return Freshness(State.STALE, ("no_provenance",))
    recorded = entry.get("digests", {})
    now = current.as_json()
    reasons = [reason for key, reason in REASONS.items() if recorded.get(key) != now[key]]
    if entry.get("report_sha256") != (sha256_file(report) if known is None else known[1]):
        reasons.append("report_changed")
    if reasons:
        detail = changed_inputs(recorded.get("inputs"), now["inputs"]) if "input_changed" in reasons else None
        return Freshness(State.STALE, tuple(reasons), detail)
    return Freshness(State.FRESH)


def changed_inputs(recorded: Any, now: dict[str, Any]) -> str:
    """'changed: a, b, c and 2 more': the inputs whose digest differs, appeared or disappeared."""
    before = recorded if isinstance(recorded, dict) else {}
    paths = sorted(p for p in set(before) | set(now) if before.get(p) != now.get(p) or (p in before) != (p in now))
    shown = ", ".join(paths[:PATHS_NAMED])
    more = f" and {len(paths) - PATHS_NAMED} more" if len(paths) > PATHS_NAMED else ""
    return f"changed: {shown}{more}"
