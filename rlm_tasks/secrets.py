"""Secrets masked in every log rlm writes, as CI systems mask them, and the environment a worker inherits.

What is masked: the values of `agent.env`, and the values of the orchestrator's
environment variables whose names look secret (`*KEY*`, `*TOKEN*`, `*SECRET*`,
`*PASSWORD*`, case-insensitive, plus the patterns of `agent.mask_env` and of
$RLM_MASK_ENV, comma-separated). Values shorter than MIN_LENGTH are not masked:
they would blank out ordinary words (`agent.env: {MODE: gemini}` would mask a
model's name in the events file rlm reads usage from) and are no secret anyway. Masking happens
while the log is written, so a secret never reaches the disk, also when a read
splits it in two.
"""

from __future__ import annotations

import fnmatch
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import IO

SECRET_NAME_PATTERNS = ("*KEY*", "*TOKEN*", "*SECRET*", "*PASSWORD*")
EXTRA_PATTERNS_ENV = "RLM_MASK_ENV"
MIN_LENGTH = 8
MASK = b"[masked]"
CHUNK = 1 << 16


def name_patterns(extra: Iterable[str] = ()) -> tuple[str, ...]:
    from_env = [p.strip() for p in os.environ.get(EXTRA_PATTERNS_ENV, "").split(",") if p.strip()]
    return (*SECRET_NAME_PATTERNS, *extra, *from_env)


def looks_secret(name: str, patterns: Sequence[str]) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern.upper()) for pattern in patterns)


def values_to_mask(environ: Mapping[str, str], agent_env: Mapping[str, str],
                   extra_patterns: Iterable[str] = ()) -> tuple[str, ...]:
    """Every value to mask, longest first (a secret containing another is masked whole)."""
    patterns = name_patterns(extra_patterns)
    found = {value for value in agent_env.values()}
    found.update(value for name, value in environ.items() if looks_secret(name, patterns))
    return tuple(sorted((v for v in found if len(v) >= MIN_LENGTH), key=lambda v: (-len(v), v)))


def inherited(environ: Mapping[str, str], inherit: str | Sequence[str]) -> dict[str, str]:
    """The part of the orchestrator's environment a worker starts with: all of it, or only the names listed."""
    if inherit == "all":
        return dict(environ)
    return {name: environ[name] for name in inherit if name in environ}


class Masker:
    """Replaces every secret in a byte stream fed in chunks; holds back a tail that could begin a secret.

    A secret starting before the held-back tail is complete (the tail starts at the earliest position from which
    the rest could still grow into a secret), so it is masked whole, the longest one first.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self.prefixes = {s[:k] for s in self.secrets for k in range(1, len(s))}
        self.longest = max((len(s) for s in self.secrets), default=0)
        self.pattern = re.compile(b"|".join(re.escape(s) for s in self.secrets)) if self.secrets else None
        self.pending = b""

    def _tail(self, data: bytes, start: int) -> int:
        """Where the held-back tail begins: the longest suffix (from `start` on) that is a secret's beginning."""
        for k in range(min(self.longest - 1, len(data) - start), 0, -1):
            if data[-k:] in self.prefixes:
                return len(data) - k
        return len(data)

    def feed(self, chunk: bytes) -> bytes:
        if self.pattern is None:
            return chunk
        data = self.pending + chunk
        tail = self._tail(data, 0)
        out: list[bytes] = []
        pos = 0
        for match in self.pattern.finditer(data):
            if match.start() >= tail:
                break
            out += [data[pos:match.start()], MASK]
            pos = match.end()
            if pos > tail:  # a whole secret reached into what looked like a beginning
                tail = self._tail(data, pos)
        out.append(data[pos:tail])
        self.pending = data[max(pos, tail):]
        return b"".join(out)

    def flush(self) -> bytes:
        data, self.pending = self.pending, b""
        return self.pattern.sub(MASK, data) if self.pattern is not None else data


class SharedLog:
    """A log file several threads write to (the agent's stdout and stderr, its event lines), each whole write
    at once."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        if data:
            with self.lock:
                self.handle.write(data)
                self.handle.flush()


def pump(source: IO[bytes], sink: SharedLog, secrets: Sequence[str]) -> None:
    """Copy a pipe to a log until EOF, masking as it goes (run in a thread per pipe)."""
    masker = Masker(secrets)
    with source:
        fd = source.fileno()
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except OSError:
                break
            if not chunk:
                break
            sink.write(masker.feed(chunk))
    sink.write(masker.flush())
