"""Deferred opportunities: every item under a `Deferred opportunities` heading of every report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rlm_tasks.state import reports

SECTION = "deferred opportunities"
ITEM = re.compile(r"^( *)(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
LABELS = {"proposal": "proposal", "why deferred": "why_deferred", "how to validate": "how_to_validate"}
LABEL = re.compile(r"(?:\*\*|__)?\b(proposal|why deferred|how to validate)\b(?:\*\*|__)?\s*[:：](?:\*\*|__)?", re.I)
NONE_MARKERS = re.compile(r"^(none(\s+identified)?|n/?a|nothing( deferred)?)\b", re.I)


def section(text: str, name: str = SECTION) -> tuple[int, list[str]] | None:
    """(first body line number, body lines) of the section `name` (normalised), or None without such a heading."""
    lines = text.splitlines()
    found = reports.headings(text)
    for index, (number, title) in enumerate(found):
        if reports.normalise_heading(title) == name:
            level = len(lines[number - 1].lstrip()) - len(lines[number - 1].lstrip().lstrip("#"))
            end = len(lines)
            for later_number, _ in found[index + 1:]:
                later = lines[later_number - 1].lstrip()
                if len(later) - len(later.lstrip("#")) <= level:
                    end = later_number - 1
                    break
            return number + 1, lines[number:end]
    return None


def _fields(text: str) -> dict[str, str | None]:
    result: dict[str, str | None] = {"proposal": None, "why_deferred": None, "how_to_validate": None}
    parts = LABEL.split(text)
    lead = parts[0].strip(" \t-*.;")
    for label, value in zip(parts[1::2], parts[2::2], strict=False):
        key = LABELS[label.lower()]
        cleaned = value.strip().rstrip(" .;").strip(" *_")
        if cleaned and result[key] is None:
            result[key] = cleaned
    if result["proposal"] is None and lead:
        result["proposal"] = lead.rstrip(" .;")
    return result


def _is_none(text: str) -> bool:
    return bool(NONE_MARKERS.match(text.strip(" \t*_.-")))


def parse(text: str, report_path: str) -> list[dict[str, Any]] | None:
    """Items of the report's deferred section; None when the report has no such section."""
    found = section(text)
    if found is None:
        return None
    first_line, body = found
    items: list[tuple[int, list[str]]] = []
    loose: list[tuple[int, list[str]]] = []  # paragraphs outside any list
    base_indent: int | None = None  # deeper list markers are parts of the item above
    for offset, line in enumerate(body):
        number = first_line + offset
        match = ITEM.match(line.expandtabs(4))
        if match and (base_indent is None or len(match.group(1)) <= base_indent):
            base_indent = len(match.group(1)) if base_indent is None else base_indent
            items.append((number, [match.group(2)]))
        elif line.strip() and items and (line.startswith((" ", "\t")) or not loose):
            items[-1][1].append(line.strip())
        elif line.strip():
            if loose and body[offset - 1].strip():
                loose[-1][1].append(line.strip())
            else:
                loose.append((number, [line.strip()]))
    out = []
    for number, parts in items or loose:
        joined = " ".join(p.lstrip("-*+ ").strip() for p in parts)
        if not joined or _is_none(joined):
            continue
        out.append({**_fields(joined), "source": {"report_path": report_path, "line": number}})
    return out


def collect(report_files: list[tuple[str, Path]]) -> dict[str, Any]:
    """deferred.json content for the given (report_path, file) pairs; missing reports are skipped."""
    items: list[dict[str, Any]] = []
    without: list[str] = []
    read = 0
    for report_path, file in report_files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, IsADirectoryError):
            continue
        read += 1
        found = parse(text, report_path)
        if found is None:
            without.append(report_path)
        else:
            items.extend(found)
    return {"items": items, "count": len(items), "reports_read": read, "reports_without_section": without}
