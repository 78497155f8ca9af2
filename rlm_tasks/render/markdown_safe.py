"""Worker reports (untrusted Markdown) as HTML that can hold no script.

markdown-it-py (CommonMark, kept by the executablebooks project) parses; we make it safe: raw HTML in a
report comes out as text (`html: False`), a link leads only to http(s), mailto, a fragment or a relative
path (no `javascript:`, `data:`, `vbscript:` or `file:`), and an image is never fetched (the report opens
offline and loads nothing): it shows as its alt text and its address, as text. Every attribute value is
escaped by the renderer. The page's Content-Security-Policy is the second wall (phases/report_html.py).
"""

from __future__ import annotations

import functools
import html
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_SAFE_SCHEMES = ("http", "https", "mailto")
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def safe_link(url: str) -> bool:
    """http(s), mailto, a fragment or a relative path; whatever hides in control or invisible characters too."""
    bare = _INVISIBLE.sub("", urllib.parse.unquote(html.unescape(url)))
    match = _SCHEME.match(bare)
    return match is None or match.group(1).lower() in _SAFE_SCHEMES


@functools.cache
def _parser() -> Any:
    from markdown_it import MarkdownIt  # imported when a report is rendered: a run never needs it

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
    md.validateLink = safe_link  # type: ignore[method-assign]  # markdown-it-py documents replacing it

    def image(renderer: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        alt = "".join(child.content for child in token.children or [])
        return (f'<span class="image">[image: {html.escape(alt)} — '
                f'{html.escape(str(token.attrGet("src") or ""))}]</span>')

    def link_open(renderer: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        href = str(tokens[idx].attrGet("href") or "")
        return f'<a href="{html.escape(href, quote=True)}" rel="noopener noreferrer nofollow">'

    md.add_render_rule("image", image)
    md.add_render_rule("link_open", link_open)
    return md


def to_html(text: str) -> str:
    """The report as HTML of CommonMark's tags (and tables), with no raw HTML, unsafe link or image."""
    rendered: str = _parser().render(text)
    return rendered
