"""Reading worker reports: headings, and whether a report is acceptable."""

from __future__ import annotations

import re
from pathlib import Path

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
    """Why the report at `path` is not acceptable, or None when it is."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "no report written"
    except IsADirectoryError:
        return "report path is a directory"
    if not data.strip():
        return "report is empty"
    text = data.decode("utf-8", errors="replace")
    present = {normalise_heading(h) for _, h in headings(text)}
    missing = [s for s in required_sections if normalise_heading(s) not in present]
    if missing:
        return (
            "report lacks required section" + ("s " if len(missing) > 1 else " ") + ", ".join(f"'{m}'" for m in missing)
        )
    return None
