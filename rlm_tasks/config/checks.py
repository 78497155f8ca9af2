"""Semantic checks of rlm.yaml past its schema: ids, dependencies, cycles, paths, tiers, ownership.

Each problem is one FILE:LINE:COL line; every problem is found, not only the first.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from pathlib import Path, PurePosixPath
from typing import Any

from rlm_tasks.agents import KINDS
from rlm_tasks.config import defaults, foreach, ownership, paths, schema, values, yamlpos
from rlm_tasks.config.freeze import dependencies, map_task_ids, merged_agent
from rlm_tasks.config.yamlpos import KeyPath, format_path

MALFORMED = "\0malformed-"  # placeholder id of a task the schema already rejected


# C0 and C1 controls and the separators str.splitlines() also breaks on (U+0085 is C1)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """Keys and values from the file may hold line breaks or control characters: a problem stays one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class Checker:
    def __init__(self, doc: yamlpos.YamlDocument, shown: str, root: Path, config_rel: str = "rlm.yaml") -> None:
        self.doc = doc
        self.shown = shown
        self.root = root
        self.config_rel = config_rel
        self.problems: list[tuple[int, int, str]] = []
        self.warnings: list[tuple[int, int, str]] = []

    def warn(self, path: KeyPath, message: str) -> None:
        pos = self.doc.position(path)
        line = f"{self.shown}:{pos.line}:{pos.column}: {format_path(path)}: warning: {message}"
        self.warnings.append((pos.line, pos.column, one_line(line)))

    def add(self, path: KeyPath, message: str, *, at_key: bool = False) -> None:
        pos = self.doc.position(path, key=at_key)
        line = f"{self.shown}:{pos.line}:{pos.column}: {format_path(path)}: {message}"
        self.problems.append((pos.line, pos.column, one_line(line)))

    def sorted_problems(self) -> list[str]:
        seen: list[str] = []
        for *_, line in sorted(self.problems, key=lambda p: (p[0], p[1])):
            if line not in seen:
                seen.append(line)
        return seen

    def repo_path(self, path: KeyPath, value: str, what: str) -> bool:
        """Lexical and symlink checks; True when the path is inside the repository."""
        if "\0" in value:  # config/values.py reports the NUL; no file system call takes such a path
            return False
        if _CONTROL.search(value):  # status and summaries print paths one per line: a line break would forge one
            self.add(path, f"{what} {one_line(repr(value))} contains a control character (a line break, tab, ...)")
            return False
        if PurePosixPath(value).is_absolute() or (len(value) > 1 and value[1] == ":"):
            self.add(path, f"{what} must be relative to the repository root, got absolute path '{value}'")
            return False
        normal = posixpath.normpath(value)
        if normal == ".." or normal.startswith("../"):
            self.add(path, f"{what} '{value}' escapes the repository root")
            return False
        escaped = paths.escape_problem(self.root, value, what)
        if escaped:
            self.add(path, escaped)
        return escaped is None

    def semantic(self, data: dict[str, Any], expansion: foreach.Expansion, partial: bool = False) -> None:
        for path, message in expansion.problems:
            self.add(path, message)
        generated = expansion.tasks
        tiers = set(defaults.TIERS) | set(data.get("tiers", {}))
        task_defaults = data.get("defaults", {})
        run_id = data["run_id"]
        ids = {g.task["id"] for g in generated if isinstance(g.task.get("id"), str)}
        known_ids = {i for i in ids if not i.startswith(MALFORMED)} | set(expansion.fanouts)
        all_ids = sorted(known_ids)
        self.max_watch_files = data.get("budget", {}).get("max_watch_files", defaults.MAX_WATCH_FILES)
        watch_excluded = frozenset(
            posixpath.normpath(g.task.get("report_path") or defaults.report_path(run_id, g.task["id"]))
            for g in generated if isinstance(g.task.get("id"), str))
        kind_tiers: dict[tuple[str, str], KeyPath] = {}  # (agent kind, compute_tier) → where first used
        # duplicate ids and report paths
        seen_ids: dict[str, str] = {}
        seen_reports: dict[str, str] = {}
        for name, (section, index) in expansion.where.items():
            seen_ids[name] = f"{format_path((section, index))} (the fan-out's name)"
        for g in generated:
            section, index, task = g.section, g.origin, g.task
            where = format_path((section, index)) + (f" (item '{g.item}')" if g.fanout else "")
            task_id = task["id"]
            if not isinstance(task_id, str) or task_id.startswith(MALFORMED):
                continue
            if g.fanout and len(task_id) > values.MAX_ID_LENGTH:
                self.add((section, index, "id"), f"generated id (item '{g.item}') is longer than "
                                                 f"{values.MAX_ID_LENGTH} characters ({len(task_id)})")
            elif g.fanout and not foreach.NAME.fullmatch(task_id):
                self.add((section, index, "id"), f"generated id {json.dumps(task_id)} (item '{g.item}') does not "
                                                 f"match the pattern {foreach.NAME.pattern}")
            duplicate = task_id in seen_ids
            if duplicate:
                self.add(
                    (section, index, "id"),
                    f"duplicate task id '{task_id}'{f' (item {chr(39)}{g.item}{chr(39)})' if g.fanout else ''} "
                    f"(first defined at {seen_ids[task_id]})",
                )
            else:
                seen_ids[task_id] = where
            if task.get("mode") and task["mode"] != ("map" if section == "tasks" else "verify"):
                expected = "map" if section == "tasks" else "verify"
                self.add((section, index, "mode"), f"tasks under '{section}' have mode '{expected}'")
            report = task.get("report_path") or defaults.report_path(run_id, task_id)
            too_long = paths.length_problem(self.root, report) if isinstance(report, str) else None
            if too_long:
                self.add((section, index, "report_path") if "report_path" in task else (section, index, "id"),
                         too_long)
                continue
            key = paths.resolved_rel(self.root, report)  # a link to another task's report is that report
            report_at = (section, index, "report_path") if "report_path" in task else (section, index, "id")
            if key in seen_reports and not (duplicate and "report_path" not in task):  # said once is enough
                self.add(report_at, f"report_path '{report}' is also the report of task '{seen_reports[key]}'")
            else:
                seen_reports[key] = task_id
            if "report_path" in task and self.repo_path((section, index, "report_path"), task["report_path"],
                                                         "report_path"):
                problem = paths.report_path_problem(self.root, task["report_path"], run_id, self.config_rel)
                templates = data.get("templates_dir")
                if problem is None and isinstance(templates, str) and "\0" not in templates:
                    where = paths.resolved_rel(self.root, templates)
                    inside = key.startswith(f"{where}/") if where != "." else key.endswith(".j2")
                    if inside:  # every prompt would render it
                        problem = (f"report_path '{task['report_path']}' is inside templates_dir '{templates}': "
                                   "a worker's report would become a template")
                if problem:
                    self.add((section, index, "report_path"), problem)
            self.task_paths((section, index), task, watch_excluded)
            tier = task.get("compute_tier")
            if tier is not None and tier not in tiers:
                self.add(
                    (section, index, "compute_tier"),
                    f"unknown compute_tier '{tier}'; defined: {', '.join(sorted(tiers))}{schema.suggest(tier, tiers)}",
                )
            for i, dep in enumerate(task.get("depends_on", [])):
                if dep == task_id or (g.fanout is not None and dep == g.fanout):
                    self.add((section, index, "depends_on", i), f"task '{task_id}' depends on itself"
                             + (f" (through its fan-out '{dep}')" if dep != task_id else ""))
                elif dep not in known_ids:  # a set: a list made a 20,000-task chain quadratic
                    self.add(
                        (section, index, "depends_on", i),
                        f"unknown task '{dep}'{schema.suggest(dep, all_ids)}; known: {_listed(all_ids)}",
                    )
            merged = merged_agent(data, task)
            self.agent((section, index, "agent"), merged, "agent" in task)
            tier_name = task.get("compute_tier", task_defaults.get("compute_tier", defaults.COMPUTE_TIER))
            where_kind = (section, index, "agent") if "kind" in task.get("agent", {}) else ("agent",)
            kind_tiers.setdefault((str(merged.get("kind", defaults.AGENT_KIND)), str(tier_name)), where_kind)
        self.foreign_models(data, kind_tiers)
        self.task_paths(("defaults",), task_defaults, watch_excluded)
        tier = task_defaults.get("compute_tier")
        if tier is not None and tier not in tiers:
            self.add(
                ("defaults", "compute_tier"),
                f"unknown compute_tier '{tier}'; defined: {', '.join(sorted(tiers))}{schema.suggest(tier, tiers)}",
            )
        for i, item in enumerate(data.get("hint_paths", [])):
            if self.repo_path(("hint_paths", i), item, "hint_paths") and not os.path.lexists(self.root / item):
                self.warn(("hint_paths", i), f"'{item}' does not exist: workers are pointed at nothing")
        if "templates_dir" in data:
            self.repo_path(("templates_dir",), data["templates_dir"], "templates_dir")
            if not (self.root / data["templates_dir"]).is_dir():
                self.add(("templates_dir",), f"directory '{data['templates_dir']}' does not exist")
        if not (data.get("tasks") or data.get("verify")) and not partial:
            self.add((), "no tasks: declare at least one task under 'tasks'")
        verify_count = sum(1 for g in generated if g.section == "verify")
        limit = data.get("verify_k", defaults.VERIFY_K)
        if verify_count > limit:
            cap = defaults.VERIFY_K
            which = "verify_k" if "verify_k" in data else f"at most {cap} (top-K, K <= {cap})"
            self.add(
                ("verify",),
                f"{verify_count} verify tasks, but an iteration may have {which}"
                + (f" = {limit}" if "verify_k" in data else "")
                + "; keep the most important ones",
            )
        for i, conclusion in enumerate(data.get("decision", {}).get("conclusions", [])):
            for j, item in enumerate(conclusion.get("evidence", [])):
                self.repo_path(("decision", "conclusions", i, "evidence", j), item, "evidence")
        for i, item in enumerate(data.get("setup", {}).get("copy", [])):
            top = posixpath.normpath(item).split("/")[0]
            if self.repo_path(("setup", "copy", i), item, "setup.copy") and top in paths.MACHINERY:
                self.add(("setup", "copy", i), f"setup.copy '{item}' is inside {top}/")
        executor = data.get("executor", {})
        if executor.get("kind") == "dask" and executor.get("filesystem") == "none":
            isolated_default = data.get("defaults", {}).get("isolation") == "worktree"
            for g in generated:
                if g.task.get("isolation", "worktree" if isolated_default else "none") != "worktree":
                    self.add((g.section, g.origin), "executor.filesystem none needs isolation: worktree on every "
                                                    "task (in the task or in defaults:)")
        self.cycles(expansion)
        for path, message in ownership.config_problems(_expanded(data, expansion), self.root):
            self.add(_origin(path, expansion), message)

    def task_paths(self, at: KeyPath, task: dict[str, Any], watch_excluded: frozenset[str]) -> None:
        """inputs exist and are files or directories (globs belong to watch); watch globs match something,
        and not too much; every path stays inside the repository."""
        for field_name in ("inputs", "context_paths", "watch", "owns"):
            for i, item in enumerate(task.get(field_name, [])):
                where = (*at, field_name, i)
                if not self.repo_path(where, item, field_name):
                    continue
                if field_name == "inputs":
                    problem = paths.input_problem(self.root, item)
                    if problem:
                        self.add(where, problem)
                    mine = [p for p in task.get("owns", [])
                            if isinstance(p, str) and ownership.patterns_overlap(item, p)]
                    if mine:
                        self.warn(where, f"'{item}' is also owned by this task ('{mine[0]}'): it reads what it "
                                         "edits; its own edits do not make it stale (that input's digest is taken "
                                         "when it finishes), anyone else's do")
                elif field_name == "context_paths" and not os.path.lexists(self.root / item):
                    self.warn(where, f"'{item}' does not exist: the worker is pointed at nothing")
                elif field_name == "watch":
                    count = len(paths.watch_files(self.root, item, watch_excluded))
                    if count == 0:
                        self.warn(where, f"glob '{item}' matches no file")
                    elif count > self.max_watch_files:
                        self.add(where, f"glob '{item}' matches {count:,} files, more than budget.max_watch_files "
                                        f"= {self.max_watch_files:,}; narrow it")

    def agent(self, path: KeyPath, agent: dict[str, Any], own_block: bool) -> None:
        # `command`/`report` are ignored by other kinds, so switching kind stays a one-line edit.
        at = path if own_block else ("agent",)
        kind = KINDS.get(agent.get("kind", defaults.AGENT_KIND))  # an unknown kind is the schema's error
        for message in kind.config_problems(agent) if kind is not None else ():
            self.add(at, message)

    def foreign_models(self, data: dict[str, Any], kind_tiers: dict[tuple[str, str], KeyPath]) -> None:
        """Warn where a kind would get a built-in tier's model made for another kind (gemini given a gpt model)."""
        declared = data.get("tiers", {})
        for (name, tier), at in sorted(kind_tiers.items()):
            kind = KINDS.get(name)
            if kind is None or not kind.TIERS or "model" in declared.get(tier, {}) or tier not in defaults.TIERS:
                continue
            model = defaults.TIERS[tier][0]
            if model not in {m for m, _ in kind.TIERS.values()}:
                self.warn((*at, "kind") if at != ("agent",) or "agent" in data else ("tiers",),
                          f"agent kind '{name}' gets the built-in model '{model}' for compute_tier '{tier}'; "
                          f"declare tiers.{tier}.model (`rlm init --agent {name}` writes {name}'s tiers)")

    def cycles(self, expansion: foreach.Expansion) -> None:
        map_ids = map_task_ids(expansion)
        graph = {g.task["id"]: [d for d in dependencies(g, expansion, map_ids) if d != g.task["id"]]
                 for g in expansion.tasks}
        where = {g.task["id"]: (g.section, g.origin) for g in expansion.tasks}
        state: dict[str, int] = {}  # 1 visiting, 2 done
        reported: set[frozenset[str]] = set()
        for start in graph:  # depth first without recursion: a chain 20,000 deep is one walk
            if start in state:
                continue
            state[start] = 1
            path, positions = [start], [0]
            while path:
                node, i = path[-1], positions[-1]
                deps = graph[node]
                if i == len(deps):
                    state[node] = 2
                    path.pop()
                    positions.pop()
                    continue
                positions[-1] = i + 1
                dep = deps[i]
                if dep not in graph:
                    continue
                if state.get(dep) == 1:
                    cycle = [*path[path.index(dep):], dep]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        self.add((*where[dep], "depends_on"), "dependency cycle: " + " -> ".join(cycle))
                elif dep not in state:
                    state[dep] = 1
                    path.append(dep)
                    positions.append(0)


KNOWN_SHOWN = 20  # ids an "unknown task" line lists: a 20,000-task plan must not print 20,000 ids per mistake


def _listed(ids: list[str]) -> str:
    shown = ", ".join(ids[:KNOWN_SHOWN])
    return shown if len(ids) <= KNOWN_SHOWN else f"{shown}, ... ({len(ids):,} in all)"


def _expanded(data: dict[str, Any], expansion: foreach.Expansion) -> dict[str, Any]:
    """`data` with the generated tasks in place of each fan-out (and fan-out names resolved in depends_on)."""
    out = dict(data)
    for section in ("tasks", "verify"):
        out[section] = [{**g.task, "depends_on": list(expansion.resolve(g.task.get("depends_on", [])))}
                        for g in expansion.tasks if g.section == section]
    return out


def _origin(path: KeyPath, expansion: foreach.Expansion) -> KeyPath:
    """A key path into _expanded(data) → the same place in rlm.yaml (the declared foreach task)."""
    if len(path) >= 2 and path[0] in ("tasks", "verify") and isinstance(path[1], int):
        origins = [g.origin for g in expansion.tasks if g.section == path[0]]
        if path[1] < len(origins):
            return (path[0], origins[path[1]], *path[2:])
    return path


def well_formed(data: dict[str, Any]) -> dict[str, Any]:
    """The subset the semantic checks can read safely when the schema already found problems.

    Only tasks that are mappings with string ids and goals are kept, with only their list-of-string
    fields; everything else was already reported by the schema.
    """

    def usable(value: Any) -> bool:  # a NUL was reported already, and no OS call accepts it
        return isinstance(value, str) and "\0" not in value

    def strings(value: Any) -> list[str]:
        return [v for v in value if usable(v)] if isinstance(value, list) else []

    def task(raw: Any) -> dict[str, Any] | None:
        if not isinstance(raw, dict) or not usable(raw.get("id")):
            return None
        kept: dict[str, Any] = {"id": raw["id"], "goal": str(raw.get("goal", ""))}
        if isinstance(raw.get("foreach"), dict):
            kept["foreach"] = raw["foreach"]
        for key in ("depends_on", "inputs", "context_paths", "watch", "owns"):
            if key in raw:
                kept[key] = strings(raw[key])
        for key in ("report_path", "compute_tier", "mode"):
            if usable(raw.get(key)):
                kept[key] = raw[key]
        return kept

    # Positions are looked up by index, so keep a placeholder where a task is malformed.
    out: dict[str, Any] = {"run_id": data["run_id"] if usable(data.get("run_id")) else "run"}
    for section in ("tasks", "verify"):
        items = data.get(section)
        if isinstance(items, list):
            out[section] = [task(t) or {"id": f"{MALFORMED}{section}-{i}", "goal": ""} for i, t in enumerate(items)]
    tiers = data.get("tiers")
    out["tiers"] = {k: {} for k in tiers} if isinstance(tiers, dict) else {}
    return out
