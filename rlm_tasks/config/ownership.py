"""Disjoint file ownership: `owns:` globs, which files they match, and overlaps between concurrent tasks.

A pattern is a repo-relative POSIX glob: `*` and `?` stay inside one path
segment, `[...]` is a character class, a `**` segment spans any number of
segments. A pattern owns every path it matches and everything beneath those
paths (so `src/pkg` and `src/pkg/` own the whole directory).

Two tasks can run at the same time when neither reaches the other through
`depends_on`. Their patterns overlap when they match a common existing file;
when a pattern matches no file yet, the patterns themselves are compared
(is there any path both could match?).
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from rlm_tasks.config.yamlpos import KeyPath, format_path

GLOB_CHARS = re.compile(r"[*?\[]")
SKIP_DIRS = {".git", ".rlm"}  # git internals and rlm state are nobody's to own
MAX_EXAMPLES = 3


class OwningTask(Protocol):
    """What ownership needs of a task (config.records.TaskSpec; config/checks.py imports this module)."""

    @property
    def id(self) -> str: ...

    @property
    def depends_on(self) -> tuple[str, ...]: ...

    @property
    def owns(self) -> tuple[str, ...]: ...


# ---- patterns ---------------------------------------------------------------------------------------------

def segments(pattern: str) -> tuple[str, ...]:
    """The pattern's segments with the implied `**` for "everything beneath"."""
    parts = tuple(p for p in pattern.strip("/").split("/") if p not in ("", "."))
    return parts if parts and parts[-1] == "**" else (*parts, "**")


Chars = tuple[bool, tuple[tuple[str, str], ...]]  # (negated, ranges): one character
Token = Chars | None  # None is "*"


def _tokens(segment: str) -> tuple[Token, ...]:
    """One segment as tokens: "*" runs, `?` and `[...]` classes, literal characters (fnmatch rules)."""
    out: list[Token] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            if not out or out[-1] is not None:
                out.append(None)
        elif c == "?":
            out.append((True, ()))
        elif c == "[" and (end := _class_end(segment, i)) > 0:
            start = i + 1
            negate = segment[start] in "!^"
            body = segment[start + negate:end]
            ranges, j = [], 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    ranges.append((body[j], body[j + 2]))
                    j += 3
                else:
                    ranges.append((body[j], body[j]))
                    j += 1
            out.append((negate, tuple(ranges)))
            i = end
        else:
            out.append((False, ((c, c),)))
        i += 1
    return tuple(out)


def _class_end(segment: str, i: int) -> int:
    """Index of the `]` closing the class opened at i, or -1 when `[` is a literal."""
    j = i + 1
    if j < len(segment) and segment[j] in "!^":
        j += 1
    if j < len(segment) and segment[j] == "]":
        j += 1  # a leading "]" is part of the class
    return segment.find("]", j)


def _token_regex(token: Token) -> str:
    if token is None:
        return "[^/]*"
    negate, ranges = token
    if not negate and len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return re.escape(ranges[0][0])
    body = "".join(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in ranges)
    return f"[^/{body}]" if negate else f"[{body}]"


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    regex = ""
    for part in segments(pattern)[:-1]:
        regex += "(?:[^/]+/)*" if part == "**" else "".join(_token_regex(t) for t in _tokens(part)) + "/"
    # the last segment is always "**": the path itself or anything beneath it
    regex = regex[:-1] + "(?:/.*)?" if regex.endswith("/") else regex + ".*"
    return re.compile(regex + r"\Z")


@functools.lru_cache(maxsize=256)
def compile_exact(pattern: str) -> re.Pattern[str]:
    """The pattern as a regex for the path itself, not what lies beneath it (`foreach.files` picks files)."""
    parts = [p for p in pattern.strip("/").split("/") if p not in ("", ".")]
    regex = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            regex += "(?:[^/]+/)*[^/]+" if last else "(?:[^/]+/)*"
        else:
            regex += "".join(_token_regex(t) for t in _tokens(part)) + ("" if last else "/")
    return re.compile(regex + r"\Z")


def matches(pattern: str, path: str) -> bool:
    return compile_pattern(pattern).match(path) is not None


def owners(tasks: Iterable[OwningTask], path: str) -> list[str]:
    """Ids of the tasks whose patterns own `path`."""
    return [t.id for t in tasks if any(matches(p, path) for p in t.owns)]


# ---- pattern against pattern ------------------------------------------------------------------------------

def _chars_meet(a: Chars, b: Chars) -> bool:
    (neg_a, ra), (neg_b, rb) = a, b
    if neg_a and neg_b:
        return True  # two "anything but a few" sets always share a character
    if neg_a or neg_b:
        pos, neg = (rb, ra) if neg_a else (ra, rb)
        for lo, hi in pos:  # is some char of lo..hi outside every negated range?
            c = ord(lo)
            for nlo, nhi in sorted(neg):
                if ord(nlo) <= c <= ord(nhi):
                    c = ord(nhi) + 1
            if c <= ord(hi):
                return True
        return False
    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in ra for lo2, hi2 in rb)


def _segments_meet(a: str, b: str) -> bool:
    ta, tb = _tokens(a), _tokens(b)

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(ta) and j == len(tb):
            return True
        if i < len(ta) and ta[i] is None and (meet(i + 1, j) or (j < len(tb) and meet(i, j + 1))):
            return True
        if j < len(tb) and tb[j] is None and (meet(i, j + 1) or (i < len(ta) and meet(i + 1, j))):
            return True
        if i < len(ta) and j < len(tb):
            x, y = ta[i], tb[j]
            return x is not None and y is not None and _chars_meet(x, y) and meet(i + 1, j + 1)
        return False

    return meet(0, 0)


def patterns_overlap(a: str, b: str) -> bool:
    """Is there a path both patterns own?"""
    sa, sb = segments(a), segments(b)

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(sa) and j == len(sb):
            return True
        if i < len(sa) and sa[i] == "**" and (meet(i + 1, j) or (j < len(sb) and meet(i, j + 1))):
            return True
        if j < len(sb) and sb[j] == "**" and (meet(i, j + 1) or (i < len(sa) and meet(i + 1, j))):
            return True
        if i < len(sa) and j < len(sb) and "**" not in (sa[i], sb[j]):
            return _segments_meet(sa[i], sb[j]) and meet(i + 1, j + 1)
        return False

    return meet(0, 0)


# ---- the repository's files -------------------------------------------------------------------------------

def inside_repo(pattern: str) -> bool:
    """Absolute or escaping patterns are config errors reported elsewhere; never walk them."""
    normal = posixpath.normpath(pattern)
    return not (normal.startswith("/") or normal == ".." or normal.startswith("../") or pattern[1:2] == ":")


def _literal_prefix(pattern: str) -> str:
    parts = []
    for part in segments(pattern):
        if part == "**" or GLOB_CHARS.search(part):
            break
        parts.append(part)
    return "/".join(parts)


def repo_files(root: Path, patterns: Iterable[str]) -> list[str]:
    """Repo-relative files under the literal prefixes of `patterns` (walks only what they could match)."""
    prefixes = sorted({_literal_prefix(p) for p in patterns})
    kept: list[str] = []
    for prefix in prefixes:  # drop prefixes inside another one
        if not any(prefix == k or prefix.startswith(k + "/") or k == "" for k in kept):
            kept.append(prefix)
    files: list[str] = []
    for prefix in kept:
        start = root / prefix if prefix else root
        if start.is_file():
            files.append(prefix)
            continue
        for dirpath, dirs, names in os.walk(start):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            rel = Path(dirpath).relative_to(root).as_posix()
            files.extend(name if rel == "." else f"{rel}/{name}" for name in names)
    return sorted(set(files))


# ---- overlaps between tasks -------------------------------------------------------------------------------

class Owner(NamedTuple):
    """One task's ownership as declared: ids, dependencies, and each pattern with where it is written."""

    task_id: str
    depends_on: tuple[str, ...]
    patterns: tuple[tuple[str, KeyPath], ...]


class Overlap(NamedTuple):
    first: Owner
    second: Owner
    first_pattern: tuple[str, KeyPath]
    second_pattern: tuple[str, KeyPath]
    examples: tuple[str, ...]  # common existing files; empty when decided on the patterns

    def message(self) -> str:
        (pa, where_a), (pb, _) = self.first_pattern, self.second_pattern
        a, b = self.first.task_id, self.second.task_id
        why = ("both own " + ", ".join(self.examples)) if self.examples else "the patterns can match the same files"
        same = f"'{pb}'" if pa == pb else f"'{pb}' overlaps '{pa}'"
        return (f"{same} owned by task '{a}' ({format_path(where_a)}), and '{a}' and '{b}' can run at the same "
                f"time: {why}; make one wait for the other with depends_on, e.g. `depends_on: [{a}]` on task '{b}'")


def _reach(owners_by_id: dict[str, Sequence[str]], wanted: Sequence[str]) -> dict[str, int]:
    """For every task, the set of `wanted` tasks among its transitive dependencies, as a bit mask (bit i: wanted[i]).

    Computed once per task in dependency order, without recursion: a `depends_on` chain 20,000 deep costs one
    pass and a few megabytes, where ancestor sets per task (and a recursive walk) cost gigabytes.
    """
    bit = {task_id: 1 << i for i, task_id in enumerate(wanted)}
    reach: dict[str, int] = {}
    for start in owners_by_id:
        if start in reach:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        on_path = {start}
        while stack:
            node, i = stack[-1]
            deps = owners_by_id.get(node, ())
            if i < len(deps):
                stack[-1] = (node, i + 1)
                dep = deps[i]
                if dep in reach or dep in on_path or dep not in owners_by_id:
                    continue  # done, a cycle (reported elsewhere) or unknown (reported elsewhere)
                stack.append((dep, 0))
                on_path.add(dep)
                continue
            mask = 0
            for dep in deps:
                if dep in reach:
                    mask |= reach[dep] | bit.get(dep, 0)
                elif dep in bit:
                    mask |= bit[dep]
            reach[node] = mask
            stack.pop()
            on_path.discard(node)
    return reach


def overlaps(tasks: Sequence[Owner], root: Path) -> list[Overlap]:
    """One Overlap per pair of concurrent tasks whose patterns overlap (the first overlapping pair of patterns)."""
    owning = [t for t in tasks if t.patterns]
    if len(owning) < 2:
        return []
    reach = _reach({t.task_id: t.depends_on for t in tasks}, [t.task_id for t in owning])
    bit = {t.task_id: 1 << i for i, t in enumerate(owning)}
    all_patterns = [p for t in owning for p, _ in t.patterns]
    files = repo_files(root, all_patterns)
    matched = {p: [f for f in files if matches(p, f)] for p in set(all_patterns)}
    found: list[Overlap] = []
    for i, a in enumerate(owning):
        for b in owning[i + 1:]:
            if reach.get(b.task_id, 0) & bit[a.task_id] or reach.get(a.task_id, 0) & bit[b.task_id]:
                continue
            hit = _first_overlap(a, b, matched)
            if hit is not None:
                found.append(hit)
    return found


def _first_overlap(a: Owner, b: Owner, matched: dict[str, list[str]]) -> Overlap | None:
    for pa in a.patterns:
        for pb in b.patterns:
            files_a, files_b = matched[pa[0]], matched[pb[0]]
            if files_a and files_b:
                common = sorted(set(files_a) & set(files_b))
                if common:
                    return Overlap(a, b, pa, pb, tuple(common[:MAX_EXAMPLES]))
            elif patterns_overlap(pa[0], pb[0]):
                return Overlap(a, b, pa, pb, ())
    return None


def config_problems(data: dict[str, Any], root: Path) -> list[tuple[KeyPath, str]]:
    """Overlaps in a schema-valid rlm.yaml mapping, as (key path of the later task's pattern, message)."""
    defaults = data.get("defaults", {}).get("owns")
    owners_list: list[Owner] = []
    for section in ("tasks", "verify"):
        for index, task in enumerate(data.get(section, [])):
            if "owns" in task:
                where: tuple[str | int, ...] = (section, index, "owns")
                declared = task["owns"]
            else:
                where, declared = ("defaults", "owns"), defaults or ()
            patterns = tuple((p, (*where, k)) for k, p in enumerate(declared) if inside_repo(p))
            owners_list.append(Owner(task["id"], tuple(task.get("depends_on", ())), patterns))
    return [(o.second_pattern[1], o.message()) for o in overlaps(owners_list, root)]


def plan_owners(tasks: Iterable[OwningTask]) -> list[Owner]:
    """Owners of a frozen Plan's tasks (no positions)."""
    return [Owner(t.id, tuple(t.depends_on), tuple((p, ()) for p in t.owns)) for t in tasks]
