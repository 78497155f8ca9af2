"""Escaping untrusted text (report excerpts, free-form config fields) into Markdown.

`md` makes text one inline run of literal characters: no raw HTML, no links or images (so no
`javascript:` link), no headings, lists, tables or code fences, whatever the text holds.
`code` makes it one inline code span that no backtick in the text can close early.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what means something inside a line
_LEADING = re.compile(r"^(\d*)([#\-+=.)])")  # what means something at the start of one (final.md's goal)
_BREAKS = re.compile(r"[\r\n\t\v\f\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]+")  # all str.splitlines splits on


def md(value: object) -> str:
    text = _BREAKS.sub(" ", str(value)).strip()
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _SPECIAL.sub(r"\\\1", text)
    return _LEADING.sub(r"\1\\\2", text)


def code(value: object) -> str:
    text = _BREAKS.sub(" ", str(value))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(value: object, limit: int = 120) -> str:
    """`value` for a console line: control characters (escape sequences too) shown escaped, cut at `limit`."""
    flat = _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(value))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
