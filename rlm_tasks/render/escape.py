"""Escaping untrusted text (report excerpts, free-form config fields) into Markdown (issue 10).

`md` makes text one inline run of literal characters: no raw HTML, no links or images (so no
`javascript:` link), no headings, lists, tables or code fences, whatever the text holds.
`code` makes it one inline code span that no backtick in the text can close early.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what means something inside a line
_LEADING = re.compile(r"^(\d*)([#\-+=.)])")  # what means something at the start of one (final.md's goal)
_BREAKS = re.compile(r"[\r\n\t\v\f\x00-\x08\x0b-\x1f\x7f\u2028\u2029]+")


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
