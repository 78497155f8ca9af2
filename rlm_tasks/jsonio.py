"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once at import, before any thread writes files.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def new_file_mode(path: Path) -> int:
    """The mode a replaced file keeps, or what the user's umask gives a new one (mkstemp alone gives 0600)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~UMASK


def write_bytes_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """`durable=False` skips the fsync: for files that only matter while this machine is up (inflight.json)."""
    _write_atomic(path, data, durable)


def write_text_atomic(path: Path, text: str | Iterable[str], durable: bool = True) -> None:
    """`text` may come in pieces, written one after the other: a large file is never one string in memory."""
    _write_atomic(path, text.encode("utf-8") if isinstance(text, str) else text, durable)


def _write_atomic(path: Path, content: bytes | Iterable[str], durable: bool, if_changed: bool = False) -> bool:
    """Write a temporary file beside `path`, then rename it over `path`. `if_changed`: when `path` already
    holds these bytes, leave it (and its mtime) alone and return False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            if isinstance(content, bytes):
                handle.write(content)
            else:
                pieces = iter(content)
                while batch := list(itertools.islice(pieces, 4096)):  # one write per piece: slow for a million
                    handle.write("".join(batch).encode("utf-8"))
            handle.flush()
            if if_changed and _same_bytes(tmp, path):
                os.unlink(tmp)
                return False
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a write or fsync says no file: a full disk must name the one it filled
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_text_if_changed(path: Path, text: str, durable: bool = True) -> bool:
    """Skip the write when the content is already there, so mtimes and diffs stay quiet."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_text_atomic(path, text, durable)
    return True


_ENCODER = json.JSONEncoder(indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)  # what dumps uses


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def indented(value: Any, level: int = 0) -> str:
    """`json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)` byte for byte, for JSON data with string keys.

    json.dumps falls back to a pure-Python encoder for `indent`, and each call of it leaves a reference cycle
    (its nested closures). Loading a run keeps the garbage collector off (tasks.load_run), so the
    envelope of 10,000 prompts left 20 MB behind; this builds the same text from the C encoder's leaves.
    """
    if isinstance(value, dict) and value:
        pad = "  " * (level + 1)
        items = [f"{pad}{json.dumps(key, ensure_ascii=False)}: {indented(value[key], level + 1)}"
                 for key in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(value, (list, tuple)) and value:
        pad = "  " * (level + 1)
        return "[\n" + ",\n".join(pad + indented(item, level + 1) for item in value) + "\n" + "  " * level + "]"
    return json.dumps(value, ensure_ascii=False)


def write_json(path: Path, data: Any, durable: bool = True, *, if_changed: bool = False) -> bool:
    """`dumps(data)` written atomically, streamed from the encoder into the temporary file: a 10,000-task
    reduce_state.json or provenance.json is never one string (and a list of its pieces) in memory.
    `if_changed`: leave the file (and its mtime) alone when it already holds these bytes; False then."""
    return _write_atomic(path, itertools.chain(_ENCODER.iterencode(data), ["\n"]), durable, if_changed)


def holds(path: Path, data: Any) -> bool:
    """The file holds exactly `dumps(data)`: compared as the encoder produces it, never one string in memory
    (json's indenting encoder iterates lists, so a list built item by item as it is read works too)."""
    encoder = _ENCODER
    try:
        with open(path, "rb") as handle:
            pending: list[bytes] = []
            size = 0
            for chunk in itertools.chain(encoder.iterencode(data), ["\n"]):
                pending.append(chunk.encode("utf-8"))
                size += len(pending[-1])
                if size >= 1 << 16:
                    block = b"".join(pending)
                    if handle.read(len(block)) != block:
                        return False
                    pending, size = [], 0
            block = b"".join(pending)
            return handle.read(len(block)) == block and handle.read(1) == b""
    except OSError:  # no file, or one we cannot read
        return False


def _same_bytes(one: str, other: Path) -> bool:
    try:
        with open(one, "rb") as a, open(other, "rb") as b:
            if os.fstat(a.fileno()).st_size != os.fstat(b.fileno()).st_size:
                return False
            while True:
                block = a.read(1 << 16)
                if block != b.read(1 << 16):
                    return False
                if not block:
                    return True
    except OSError:  # no file yet, or one we cannot read: write ours
        return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes, *, share_strings: bool = False) -> Any:
    """json.loads without Python's NaN/Infinity extension: every file we read was written as strict JSON.

    `share_strings`: equal string values become one object (the decoder shares only keys); a 10,000-entry
    provenance.json repeats its contract and agent digests, models and times in every entry.
    """
    if not share_strings:
        return json.loads(text, parse_constant=_no_constant)
    seen: dict[str, str] = {}

    def shared(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        return {key: seen.setdefault(value, value) if type(value) is str else value for key, value in pairs}

    return json.loads(text, parse_constant=_no_constant, object_pairs_hook=shared)


def read_json(path: Path, default: Any = None, *, share_strings: bool = False) -> Any:
    try:
        return loads(path.read_text(encoding="utf-8"), share_strings=share_strings)
    except FileNotFoundError:
        return default
