"""What passes between rlm and one worker process besides its exit: the prompt on stdin, the agent's event
stream followed into readable log lines, a `report: stdout` agent's output, and a log over its cap."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import IO

from rlm_tasks import jsonio, secrets
from rlm_tasks.run.usage import human_line


def feed_prompt(stdin: IO[bytes] | None, prompt: bytes) -> None:
    """Write the prompt and close stdin; an agent that exits without reading it is not an error."""
    if stdin is None:
        return
    try:
        stdin.write(prompt)
    except (BrokenPipeError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            stdin.close()


def feed_at_once(stdin: IO[bytes] | None, prompt: bytes) -> bytes:
    """Give the agent what its stdin pipe takes without waiting, and close it once all of the prompt went
    (mostly: a prompt is far below a pipe's 64 KiB); what is left, for a feeder thread (starting one for
    every attempt cost milliseconds on a busy machine)."""
    if stdin is None:
        return b""
    fd = stdin.fileno()
    written = 0
    try:
        os.set_blocking(fd, False)
        while written < len(prompt):
            written += os.write(fd, prompt[written:])
    except BlockingIOError:
        pass  # the pipe is full: the agent reads the rest from the thread
    except OSError:  # the agent exited, or closed its stdin, without reading: not an error
        written = len(prompt)
    finally:
        with contextlib.suppress(OSError):
            os.set_blocking(fd, True)
    if written < len(prompt):
        return prompt[written:]
    with contextlib.suppress(OSError):
        stdin.close()
    return b""


def follow_events(events_path: Path, log: secrets.SharedLog, kind: str, stop: threading.Event,
                  poll_seconds: float) -> None:
    """A readable line in the log for each event the agent appends to its events file, until `stop`.

    The events file is written as the agent's stdout arrives (masked), or by the agent itself when workers
    must outlive us (RLM_KEEP_WORKERS=1), so that `--adopt` still finds its events.
    """
    pending = b""

    def show(line: bytes) -> None:
        shown = human_line(kind, line)
        if shown is not None:
            log.write(shown)

    with events_path.open("rb") as events:
        while True:
            last = stop.is_set()  # read once more after the agent ended
            chunk = events.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    show(line)
            elif last:
                break
            else:
                stop.wait(poll_seconds)
    if pending.strip():
        show(pending)


class StdoutReport:
    """A `report: stdout` agent's output: its stdout is this file beside the log (never held in memory, no thread
    draining a pipe), capped: the poll loop ends an agent whose output went over `cap`."""

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self.cap = cap
        self.handle: IO[bytes] | None = None

    def open(self) -> IO[bytes]:
        self.handle = self.path.open("wb")
        return self.handle

    @property
    def size(self) -> int:
        if self.handle is None:
            return 0
        try:
            return os.fstat(self.handle.fileno()).st_size
        except ValueError:  # closed once the attempt ended
            try:
                return self.path.stat().st_size
            except OSError:
                return 0

    def over(self) -> bool:
        return self.size > self.cap

    def blank(self) -> bool:
        """Nothing but white space (or nothing at all) came out."""
        with contextlib.suppress(OSError), self.path.open("rb") as out:
            for chunk in iter(lambda: out.read(1 << 16), b""):
                if chunk.strip():
                    return False
        return True


def trim_log(log_path: Path, keep: int, cap: int) -> None:
    """Keep the last `keep` bytes of a log that went over its `cap`, after a line saying so."""
    with contextlib.suppress(OSError):
        size = log_path.stat().st_size
        with log_path.open("rb") as handle:
            handle.seek(max(0, size - keep))
            tail = handle.read()
        note = f"[rlm: log was {size:,} bytes, over the {cap:,}-byte cap; only its tail is kept]\n"
        jsonio.write_bytes_atomic(log_path, note.encode() + tail, durable=False)

