"""The rooms of rlm_tasks and which may import which (ARCHITECTURE.md), checked on the source with `ast`.

A room is a subpackage (agents, config, render, state, phases, lifecycle, run, install, cli),
the top-level `tasks` module, or the foundation: the other top-level modules
(errors, jsonio, clock, procs, fs, layout, resources, the package itself). Rules:
- a room imports only the rooms listed for it in ALLOWED (and itself): nothing reaches back up;
- imports sit at the top of a module; only the modules in LAZY may be imported inside a
  function (each is heavy and a no-op run does not need it);
- the modules' imports, counting every one (function-level, TYPE_CHECKING), form no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import rlm_tasks

PACKAGE = Path(rlm_tasks.__file__).parent
FOUNDATION = "foundation"

# The story of a run, bottom up: each room may use the ones before it.
# agents (the kinds: argv, events, usage, skills homes, starters, tiers, prices) sits lowest: config takes the
# schema's kinds and the default tiers and prices from it, render the argv, state and run the usage.
# install (skills, `rlm init`) sits low: a run warns when the workers will not find their skill.
_STAGES = ["agents", "config", "render", "state", "install", "phases", "lifecycle", "run", "tasks", "cli"]
ALLOWED: dict[str, set[str]] = {FOUNDATION: set()}
for _i, _room in enumerate(_STAGES):
    ALLOWED[_room] = {FOUNDATION, *_STAGES[:_i]}

LAZY = {
    "yaml": "parsing rlm.yaml: a cached, unchanged plan is not parsed again",
    "jsonschema": "validating rlm.yaml: a cached, unchanged plan is not validated again",
    "referencing": "jsonschema's registry, with it",
    "jinja2": "rendering: a no-op run renders nothing",
    "markdown_it": "rendering reports into the HTML report (`rlm report`): a run never does",
    # standard library modules only a rare path needs (every no-op doit paid for them at import)
    "ctypes": "prctl's child subreaper: only when an attempt starts",
    "tarfile": "compressing an archived run's logs",
    "difflib": "the did-you-mean hint of an error",
    "shlex": "quoting the install command of a missing-skill warning",
}


def room_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return FOUNDATION  # the package's __init__
    if len(parts) == 2 and parts[1] == "tasks":
        return "tasks"
    if len(parts) == 2 and parts[1] != "__main__" and not (PACKAGE / parts[1]).is_dir():
        return FOUNDATION
    return "cli" if parts[1] == "__main__" else parts[1]


def package_sources() -> dict[str, str]:
    """Module name → source, for every module of every package under rlm_tasks (not package data)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if not (path.parent / "__init__.py").exists():
            continue  # data, e.g. starter/dodo.py
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path.read_text(encoding="utf-8")
    return out


def _top_level(tree: ast.Module) -> set[int]:
    """The import statements at module level, also inside top-level `if TYPE_CHECKING:` and try/except."""
    ids = set()
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            ids.add(id(node))
        elif isinstance(node, (ast.If, ast.Try)):
            stack += node.body + node.orelse
            stack += [s for h in getattr(node, "handlers", []) for s in h.body]
    return ids


def _imports(module: str, source: str, known: set[str]) -> Iterator[tuple[int, str, bool]]:
    """(line, imported module, at top level) for every import in `source`; rlm_tasks names resolved to modules."""
    tree = ast.parse(source)
    top = _top_level(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")  # relative ones are reported, not resolved
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if full in known else base, id(node) in top


def violations(sources: dict[str, str]) -> list[str]:
    known = set(sources)
    problems = []
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for module, source in sorted(sources.items()):
        for line, target, at_top in _imports(module, source, known):
            where = f"{module}:{line}"
            if target.startswith("."):
                problems.append(f"{where}: relative import {target} (write the rlm_tasks.… name)")
                continue
            if target.split(".")[0] != "rlm_tasks":
                if not at_top and target.split(".")[0] not in LAZY:
                    problems.append(f"{where}: imports {target} inside a function (only {', '.join(LAZY)} may be)")
                continue
            if not at_top:
                problems.append(f"{where}: imports {target} inside a function (imports of rlm_tasks go at the top)")
            graph[module].add(target)
            mine, theirs = room_of(module), room_of(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                problems.append(f"{where}: {mine} may not import {theirs} ({target})")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge found by a depth-first search."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_package_keeps_its_room_rules() -> None:
    sources = package_sources()
    assert {"rlm_tasks.tasks", "rlm_tasks.cli.main", "rlm_tasks.run.session"} <= set(sources)
    assert violations(sources) == []


def test_every_room_is_known() -> None:
    rooms = {room_of(name) for name in package_sources()}
    assert rooms == set(ALLOWED)


def test_a_violation_of_each_rule_is_reported() -> None:
    sources = {
        "rlm_tasks": "",
        "rlm_tasks.errors": "",
        "rlm_tasks.config": "",
        "rlm_tasks.config.plan": "from rlm_tasks.run import worker\n",
        "rlm_tasks.run": "",
        "rlm_tasks.run.worker": ("from rlm_tasks import errors\n\ndef go():\n"
                                 "    from rlm_tasks.run import session\n    import yaml\n    import doit\n"),
        "rlm_tasks.run.session": "from rlm_tasks.run import worker\nfrom . import signals\n",
    }
    assert violations(sources) == [
        "rlm_tasks.config.plan:1: config may not import run (rlm_tasks.run.worker)",
        "rlm_tasks.run.session:2: relative import . (write the rlm_tasks.… name)",
        "rlm_tasks.run.worker:4: imports rlm_tasks.run.session inside a function (imports of rlm_tasks go at the top)",
        ("rlm_tasks.run.worker:6: imports doit inside a function (only yaml, jsonschema, referencing, jinja2, "
         "markdown_it, ctypes, tarfile, difflib, shlex may be)"),
        "import cycle: rlm_tasks.run.worker -> rlm_tasks.run.session -> rlm_tasks.run.worker",
    ]
