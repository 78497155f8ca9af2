"""`foreach:` fan-out: one declared task → one task per file, list item or items-file entry.

The declared task's string fields are Jinja templates over `item` (and
`index`); what comes out is validated like hand-written tasks, with errors
pointing at the declared task. The fan-out's name (`foreach.name`, by default
the literal start of the id template, `lint` for `lint-{{ item.stem }}`) is a
join: `depends_on: [lint]` waits for every generated task.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from rlm_tasks import sandbox
from rlm_tasks.config import defaults, ownership, yamlpos
from rlm_tasks.config.schema import describe
from rlm_tasks.config.yamlpos import KeyPath

MAX_ITEMS = 10_000  # per fan-out: a glob that matches a whole checkout is a mistake, not a plan
MAX_ITEMS_FILE_BYTES = 10 * 1024 * 1024
LABEL_CHARS = 120  # an item as messages, plan.json and status show it
TEMPLATED = ("id", "goal", "report_path", "compute_tier", "granularity")
TEMPLATED_LISTS = ("inputs", "context_paths", "watch", "owns", "depends_on", "required_sections")
SOURCES = ("files", "items", "items_file")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SLUG_DROP = re.compile(r"[^A-Za-z0-9._-]+")


class PathItem(str):
    """A string item; path-like helpers for templates (`item.stem`, `item.name`, `item.slug`, ...)."""

    @property
    def path(self) -> str:
        return str(self)

    @property
    def name(self) -> str:
        return PurePosixPath(self).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self).suffix

    @property
    def parent(self) -> str:
        return PurePosixPath(self).parent.as_posix()

    @property
    def slug(self) -> str:
        """The whole string as an id part: `src/a/b.py` → `src-a-b.py`."""
        return SLUG_DROP.sub("-", str(self).replace("/", "-")).strip("-._") or "item"


class Generated(NamedTuple):
    """One task after expansion; `origin` is the index of the declared task in its section."""

    section: str
    origin: int
    task: dict[str, Any]
    fanout: str | None = None
    item: str | None = None  # a short label of the item, for messages and plan.json


class Expansion:
    """What the foreach blocks of one rlm.yaml expand to. A plain class, as Totals (state/usage.py)."""

    def __init__(self, *, tasks: list[Generated] | None = None, fanouts: dict[str, list[str]] | None = None,
                 where: dict[str, tuple[str, int]] | None = None, sources: list[Any] | None = None,
                 max_files: int = defaults.MAX_WATCH_FILES) -> None:
        self.tasks = tasks or []
        self.fanouts = fanouts or {}  # name → generated ids, in order
        self.where = where or {}  # name → (section, index) declared at
        self.sources = sources or []  # what the expansion read: the cache's key
        self.problems: list[tuple[KeyPath, str]] = []
        self.max_files = max_files  # budget.max_watch_files: the cap `watch:` globs have too
        self.globbed: list[tuple[KeyPath, list[str]]] = []  # where each glob is, what it matched

    def as_json(self) -> dict[str, Any]:
        """For the validation cache: an unchanged fan-out is not rendered again."""
        return {"tasks": [[g.section, g.origin, g.task, g.fanout, g.item] for g in self.tasks],
                "fanouts": self.fanouts, "where": {k: list(v) for k, v in self.where.items()},
                "sources": self.sources}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Expansion:
        return cls(tasks=[Generated(*row) for row in data["tasks"]], fanouts=data["fanouts"],
                   where={k: (v[0], v[1]) for k, v in data["where"].items()}, sources=data["sources"])

    def resolve(self, depends_on: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """Dependencies with each fan-out name replaced by its generated ids."""
        out: list[str] = []
        for dep in depends_on:
            out.extend(self.fanouts.get(dep, [dep]))
        return tuple(dict.fromkeys(out))


def declared(data: dict[str, Any]) -> bool:
    return any(isinstance(t, dict) and "foreach" in t
               for section in ("tasks", "verify") for t in (data.get(section) or []))


def sources_only(data: dict[str, Any], root: Path) -> str:
    """sources_digest of what expand() would read (globs, items files), without rendering a thing."""
    out = Expansion(max_files=_max_files(data))
    for section in ("tasks", "verify"):
        for index, raw in enumerate(data.get(section) or []):
            if isinstance(raw, dict) and isinstance(raw.get("foreach"), dict):
                _items(out, (section, index, "foreach"), raw["foreach"], root)
    return "" if out.problems else sources_digest(out)


def default_name(id_template: str) -> str:
    """`lint-{{ item.stem }}` → `lint`: the literal text before the first template tag."""
    head = re.split(r"\{[{%#]", id_template, maxsplit=1)[0]
    return head.rstrip("-_.")


def expand(data: dict[str, Any], root: Path) -> Expansion:
    """Every task of `data` (schema-valid, or the well-formed part of it), fan-outs expanded."""
    out = Expansion(max_files=_max_files(data))
    for section in ("tasks", "verify"):
        for index, raw in enumerate(data.get(section) or []):
            if isinstance(raw, dict) and isinstance(raw.get("foreach"), dict):
                _fan_out(out, section, index, raw, root)
            else:
                out.tasks.append(Generated(section, index, raw))
    _no_reports_as_items(out)
    return out


def _max_files(data: dict[str, Any]) -> int:
    budget = data.get("budget")
    cap = budget.get("max_watch_files") if isinstance(budget, dict) else None
    return cap if isinstance(cap, int) and not isinstance(cap, bool) else defaults.MAX_WATCH_FILES


def _no_reports_as_items(out: Expansion) -> None:
    """A glob that matches a task's report would gain a task with every run, and never settle."""
    reports = {posixpath.normpath(g.task["report_path"]): g.task.get("id") for g in out.tasks
               if isinstance(g.task.get("report_path"), str)}
    for at, found in out.globbed:
        hits = [rel for rel in found if rel in reports]
        if hits:
            out.problems.append(((*at, "files"), f"matches '{hits[0]}', the report of task '{reports[hits[0]]}'; "
                                                 "a fan-out over reports grows with every run: exclude it"))


def _label(item: Any) -> str:
    """The item in one line: a printable string as it is, anything else as JSON; cut at LABEL_CHARS."""
    if isinstance(item, str) and item.isprintable():
        shown = item
    else:
        shown = json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)
    return shown if len(shown) <= LABEL_CHARS else shown[: LABEL_CHARS - 3] + "..."


def _fan_out(out: Expansion, section: str, index: int, raw: dict[str, Any], root: Path) -> None:
    spec = raw["foreach"]
    at: KeyPath = (section, index, "foreach")
    id_template = str(raw["id"]) if isinstance(raw.get("id"), str) else ""
    if id_template and not re.search(r"\{[{%]", id_template):
        out.problems.append(((section, index, "id"), f"with foreach, id is a template over item (e.g. "
                                                     f"\"{id_template}-{{{{ item.slug }}}}\"), or every item gets "
                                                     f"the same id '{id_template}'"))
        return
    name = spec.get("name") if isinstance(spec.get("name"), str) else default_name(id_template)
    if not NAME.fullmatch(name or ""):
        where = (*at, "name") if "name" in spec else (section, index, "id")
        out.problems.append((where, f"fan-out name {json.dumps(name)} is not a valid id; set foreach.name "
                                    "(the id other tasks use in depends_on to wait for every generated task)"))
        return
    if name in out.where:
        first = out.where[name]
        out.problems.append(((*at, "name") if "name" in spec else (section, index, "id"),
                             f"fan-out name '{name}' is also the name of the fan-out at {first[0]}[{first[1]}]"))
        return
    out.where[name] = (section, index)
    out.fanouts[name] = []
    items = _items(out, at, spec, root)
    if items is None:
        return
    if not items and raw.get("allow_empty") is not True:  # a typo in a glob, an empty items file: not a silent no-op
        source = next(key for key in SOURCES if key in spec)
        out.problems.append(((*at, source), f"expands to no task ({source} gives no item); fix it, or set "
                                            "allow_empty: true on the task when an empty fan-out is expected"))
        return
    template = {k: v for k, v in raw.items() if k not in ("foreach", "allow_empty")}
    for number, item in enumerate(items):
        value = PathItem(item) if isinstance(item, str) else item
        task = _render_task(out, (section, index), template, {"item": value, "index": number, "fanout": name},
                            _label(item))
        if task is None:
            continue
        out.tasks.append(Generated(section, index, task, name, _label(item)))
        out.fanouts[name].append(task["id"])


def _items(out: Expansion, at: KeyPath, spec: dict[str, Any], root: Path) -> list[Any] | None:
    given = [key for key in SOURCES if key in spec]
    if len(given) != 1:
        said = " and ".join(given) if given else "none"
        out.problems.append((at, f"give exactly one of files, items, items_file (got {said})"))
        return None
    if "exclude" in spec and given[0] != "files":
        out.problems.append(((*at, "exclude"), "exclude applies to files only"))
        return None
    if given[0] == "items":
        items: list[Any] | None = list(spec["items"])  # part of rlm.yaml: no source of its own
    elif given[0] == "files":
        items = _glob(out, at, spec, root)
    else:
        items = _read_items_file(out, (*at, "items_file"), spec["items_file"], root)
    if items is None:
        return None
    if len(items) > MAX_ITEMS:
        out.problems.append(((*at, given[0]), f"{len(items)} items, more than the {MAX_ITEMS} a fan-out may have; "
                                              "narrow it (exclude:, a smaller glob) or split it"))
        return None
    for i, item in enumerate(items):
        if not (isinstance(item, str) and item) and not (isinstance(item, dict) and item):
            where = (*at, "items", i) if given[0] == "items" else (*at, given[0])
            out.problems.append((where, f"item {i} must be a non-empty string or mapping, got {describe(item)}"))
            return None
    return items


def _escapes(value: str) -> bool:
    normal = posixpath.normpath(value)
    return PurePosixPath(value).is_absolute() or normal == ".." or normal.startswith("../") or value[1:2] == ":"


def _inside(root: Path, rel: str) -> bool:
    """The file, after every symlink, is inside the repository."""
    real = os.path.realpath(os.path.join(root, rel))
    return real == str(root) or real.startswith(str(root) + os.sep)


def _glob(out: Expansion, at: KeyPath, spec: dict[str, Any], root: Path) -> list[Any] | None:
    patterns = [spec["files"]] if isinstance(spec["files"], str) else list(spec["files"])
    excludes = [spec["exclude"]] if isinstance(spec.get("exclude"), str) else list(spec.get("exclude") or [])
    for key, values in (("files", patterns), ("exclude", excludes)):
        for i, pattern in enumerate(values):
            if isinstance(pattern, str) and "\0" in pattern:
                return None  # config/values.py reports the NUL; no file system call takes such a path
            if not pattern or _escapes(pattern):
                where = (*at, key) if isinstance(spec[key], str) else (*at, key, i)
                out.problems.append((where, f"{key} pattern {json.dumps(pattern)} must be relative to the "
                                            "repository root and stay inside it"))
                return None
    wanted = [ownership.compile_exact(p) for p in patterns]
    # exclude: a pattern also drops everything beneath what it matches (`src/vendor` drops the directory)
    unwanted = [ownership.compile_pattern(p) for p in excludes]
    found: list[str] = []
    for rel in ownership.repo_files(root, patterns):  # never walks .git/ or .rlm/
        if any(w.match(rel) for w in wanted) and not any(u.match(rel) for u in unwanted):
            path = os.path.join(root, rel)
            # the walk never enters a linked directory: only a linked file can lead out
            if os.path.islink(path) and not _inside(root, rel):
                out.problems.append(((*at, "files"), f"'{rel}' is a symlink out of the repository"))
                return None
            if os.path.isfile(path):
                found.append(rel)
        if len(found) > out.max_files:
            out.problems.append(((*at, "files"), f"matches more than budget.max_watch_files = {out.max_files:,} "
                                                 "files; narrow it (exclude:, a smaller glob) or split it"))
            return None
    out.sources.append(["files", found])
    out.globbed.append((at, found))
    return list(found)


def _read_items_file(out: Expansion, at: KeyPath, rel: str, root: Path) -> list[Any] | None:
    if "\0" in rel:
        return None  # config/values.py reports the NUL; no file system call takes such a path
    if _escapes(rel):
        out.problems.append((at, f"items_file '{rel}' must be relative to the repository root and stay inside it"))
        return None
    path = root / rel
    if not _inside(root, rel):
        out.problems.append((at, f"items_file '{rel}' is a symlink out of the repository"))
        return None
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read, a device never end it
            out.problems.append((at, f"items_file '{rel}' is not a regular file"))
            return None
        if st.st_size > MAX_ITEMS_FILE_BYTES:
            out.problems.append((at, f"items_file '{rel}' is larger than {MAX_ITEMS_FILE_BYTES} bytes"))
            return None
        raw = path.read_bytes()
    except FileNotFoundError:
        out.problems.append((at, f"items_file '{rel}' does not exist"))
        return None
    except OSError as exc:
        out.problems.append((at, f"items_file '{rel}' cannot be read: {exc.strerror or exc}"))
        return None
    out.sources.append(["items_file", rel, hashlib.sha256(raw).hexdigest()])
    try:
        text = raw.decode("utf-8")
        items = _parse_items(text, rel)
        bad = next(_unusable(items), None)
    except (UnicodeDecodeError, ValueError) as exc:
        out.problems.append((at, f"items_file '{rel}': {exc}"))
        return None
    except RecursionError:
        out.problems.append((at, f"items_file '{rel}': nested too deeply"))
        return None
    if bad is not None:
        out.problems.append((at, f"items_file '{rel}': {bad}"))
        return None
    if not isinstance(items, list):
        out.problems.append((at, f"items_file '{rel}' must hold a list of strings or mappings, "
                                 f"got {describe(items)}"))
        return None
    return items


def _unusable(value: Any) -> Iterator[str]:
    """What rlm.yaml itself may not hold either: NUL characters (no path or id can carry one), NaN/±Infinity."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _unusable(key)
            yield from _unusable(item)
    elif isinstance(value, list):
        for item in value:
            yield from _unusable(item)
    elif isinstance(value, str) and "\0" in value:
        yield f"{json.dumps(value)} contains a NUL character"
    elif isinstance(value, float) and not math.isfinite(value):
        yield f"{value} is not allowed: numbers must be finite"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_items(text: str, rel: str) -> Any:
    if rel.endswith(".json"):
        try:
            return json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None
    try:
        return yamlpos.load(text).data
    except yamlpos.YamlSyntaxError as exc:
        raise ValueError(f"line {exc.position.line} column {exc.position.column}: not valid YAML: {exc}") from None


class _TemplateProblem(Exception):
    """One field's template failed for one item."""


@functools.lru_cache(maxsize=512)
def _compiled(text: str) -> Any:
    """One compiled template per distinct text: a fan-out renders the same few templates for every item."""

    return sandbox.environment(keep_trailing_newline=True).from_string(text)


def _render(text: str, context: dict[str, Any]) -> str:
    if "{" not in text:  # most fields are plain text: no template to compile
        return text
    import jinja2

    try:
        return str(_compiled(text).render(context))
    except jinja2.TemplateSyntaxError as exc:
        raise _TemplateProblem(f"template syntax error in {json.dumps(text)}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise _TemplateProblem(f"undefined in {json.dumps(text)}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise _TemplateProblem(sandbox.violation(json.dumps(text), exc)) from None
    except Exception as exc:  # a template is code: a filter on the wrong type raises anything
        raise _TemplateProblem(f"cannot render {json.dumps(text)}: {exc}") from None


def _render_task(out: Expansion, where: tuple[str, int], template: dict[str, Any], context: dict[str, Any],
                 label: str) -> dict[str, Any] | None:
    task = dict(template)
    at: KeyPath = where
    try:
        for key in TEMPLATED:
            if isinstance(task.get(key), str):
                at = (*where, key)
                task[key] = _render(task[key], context)
        for key in TEMPLATED_LISTS:
            if isinstance(task.get(key), list):
                rendered = []
                for i, value in enumerate(task[key]):
                    at = (*where, key, i)
                    rendered.append(_render(value, context) if isinstance(value, str) else value)
                task[key] = rendered
    except _TemplateProblem as exc:
        out.problems.append((at, f"for item '{label}': {exc}"))
        return None
    return task


def sources_digest(expansion: Expansion) -> str:
    """What the expansion read, as one digest ('' without a fan-out): a cached plan is reused only while it holds."""
    if not expansion.sources:
        return ""
    return hashlib.sha256(json.dumps(expansion.sources, sort_keys=True).encode()).hexdigest()
