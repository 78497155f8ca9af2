"""Reading worker reports: headings, and whether a report is acceptable."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from rlm_tasks.config.paths import regular_file_problem

NO_REPORT = "no report written"  # the problem when report_path holds nothing
MAX_REPORT_BYTES = 20 * 1024 * 1024  # a report is prose for an orchestrator to read, not a data dump

HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def normalise_heading(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip("*_` ").rstrip(":")).casefold()


def headings(text: str) -> list[tuple[int, str]]:
    """(line number, heading text) of every ATX heading outside fenced code blocks."""
    found: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        if fence:
            continue
        match = HEADING.match(line)
        if match:
            found.append((number, match.group(2)))
    return found


def problem(path: Path, required_sections: tuple[str, ...]) -> str | None:
    """Why the report at `path` is not acceptable, or None when it is. A symlink or special file is never
    read through; a report over MAX_REPORT_BYTES is never read at all."""
    return inspect(path, required_sections)[0]


def inspect(path: Path, required_sections: tuple[str, ...]) -> tuple[str | None, bool]:
    """(problem as `problem` says it, whether an acceptable report is partial): one read for both."""
    unsafe = regular_file_problem(path)
    if unsafe:
        return unsafe, False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return NO_REPORT, False
    except OSError as exc:  # replaced by a link or a directory since the check above
        return f"report cannot be read safely: {exc.strerror or exc}", False
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            return "report is not a regular file", False
        if st.st_size > MAX_REPORT_BYTES:
            return f"report is {st.st_size:,} bytes, over the {MAX_REPORT_BYTES:,}-byte cap", False
        # what fstat promised and one byte more (read(n) allocates n bytes first: a read of the cap cost every
        # report check 20 MB of transient memory), then on up to the cap if the file grew since
        data = handle.read(st.st_size + 1)
        if len(data) > st.st_size:
            data += handle.read(MAX_REPORT_BYTES + 1 - len(data))
    if not data.strip():
        return "report is empty", False
    text = data.decode("utf-8", errors="replace")
    present = {normalise_heading(h) for _, h in headings(text)}
    missing = [s for s in required_sections if normalise_heading(s) not in present]
    if missing:
        return ("report lacks required section" + ("s " if len(missing) > 1 else " ")
                + ", ".join(f"'{m}'" for m in missing)), False
    partial_found = [s for s in PARTIAL_SECTIONS if normalise_heading(s) in present]
    if partial_found:  # a self-terminated report is only useful to the next worker with all four
        lacking = [s for s in PARTIAL_SECTIONS if s not in partial_found]
        if lacking:
            return (f"partial report (it has '{partial_found[0]}') lacks section" + ("s " if len(lacking) > 1 else " ")
                    + ", ".join(f"'{m}'" for m in lacking) + "; a self-terminated report needs all of "
                    + ", ".join(f"'{s}'" for s in PARTIAL_SECTIONS)), False
        return None, True
    return None, False


SELF_TERMINATION = "Self-termination"
PARTIAL_SECTIONS = (SELF_TERMINATION, "Partial results", "Next worker plan", "Required scope")
NEXT_PLAN_ANCHOR = "#next-worker-plan"


def is_partial(path: Path) -> bool:
    """The worker stopped early and said so: its report has a `Self-termination` section."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    wanted = normalise_heading(SELF_TERMINATION)
    return any(normalise_heading(h) == wanted for _, h in headings(text))


def next_plan_path(report_path: str) -> str:
    """Where a partial report's plan for the next worker is: its `Next worker plan` section."""
    return report_path + NEXT_PLAN_ANCHOR


KEPT_END_BYTES = 64 * 1024  # of a report over the cap, what is kept of each end when it is set aside


def set_aside_bounded(src: Path, dest: Path) -> bool:
    """Move a report over MAX_REPORT_BYTES to `dest` as its first and last KEPT_END_BYTES around one line giving
    its size and sha256 (the committed run folder never holds it whole); True when it was over the cap and is
    moved now, False when the caller moves it as it is."""
    try:
        size = os.lstat(src).st_size
    except OSError:
        return False
    if size <= MAX_REPORT_BYTES or not stat.S_ISREG(os.lstat(src).st_mode):
        return False
    digest = hashlib.sha256()
    with src.open("rb") as handle:
        head = handle.read(KEPT_END_BYTES)
        digest.update(head)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
        handle.seek(max(KEPT_END_BYTES, size - KEPT_END_BYTES))
        tail = handle.read(KEPT_END_BYTES)
    note = (f"\n\n[rlm: this rejected report was {size:,} bytes (sha256 {digest.hexdigest()}), over the "
            f"{MAX_REPORT_BYTES:,}-byte cap; only its first and last {KEPT_END_BYTES:,} bytes are kept]\n\n").encode()
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_bytes(head + note + tail)
    os.replace(tmp, dest)
    src.unlink()
    return True
