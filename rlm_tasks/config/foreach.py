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
import posixpath
import re
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from rlm_tasks import sandbox
from rlm_tasks.config import defaults, fanout_items
from rlm_tasks.config.yamlpos import KeyPath

LABEL_CHARS = 120  # an item as messages, plan.json and status show it
TEMPLATED = ("id", "goal", "report_path", "compute_tier", "granularity")
TEMPLATED_LISTS = ("inputs", "context_paths", "watch", "owns", "depends_on", "required_sections")
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
                fanout_items.read_items(out, (section, index, "foreach"), raw["foreach"], root)
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
    items = fanout_items.read_items(out, at, spec, root)
    if items is None:
        return
    if not items and raw.get("allow_empty") is not True:  # a typo in a glob, an empty items file: not a silent no-op
        source = next(key for key in fanout_items.SOURCES if key in spec)
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
