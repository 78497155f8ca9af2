"""One run as the modules see it: plan + layout + provenance, with renders cached per process.

With a `cache` (load_context), digests that only depend on the plan and
the templates, and digests of unchanged files, come from `.rlm/local/cache/`, so
telling fresh from stale renders nothing and hashes only what changed.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_tasks.config import foreach, ownership
from rlm_tasks.config import paths as config_paths
from rlm_tasks.config.freeze import freeze
from rlm_tasks.config.plan import load_plan, load_plan_data
from rlm_tasks.config.records import Plan, TaskSpec
from rlm_tasks.layout import RunLayout
from rlm_tasks.render import agents, jinja
from rlm_tasks.resources import TEMPLATE_DIR as BUILTIN_TEMPLATES
from rlm_tasks.state import reports
from rlm_tasks.state.cache import Cache, cache_path, code_signature, digest, tree_signature
from rlm_tasks.state.provenance import (
    Digests,
    Freshness,
    ProvenanceStore,
    freshness,
    sha256_file,
    sha256_json,
    sha256_text,
)

if TYPE_CHECKING:
    import jinja2


class RunContext:
    def __init__(self, plan: Plan, cache: Cache | None = None) -> None:
        self.plan = plan
        self.layout = RunLayout(plan.root, plan.run_id)
        self.store = ProvenanceStore(self.layout.provenance_json, plan.run_id)
        self.cache = cache
        self._env: jinja2.Environment | None = None
        self._tasks = {task.id: task for task in plan.tasks}
        self._report_files: dict[str, Path] = {}
        self._prompt_digests: dict[str, str] = {}  # by task id: the prompt last rendered in this process
        self._root = str(plan.root)
        self.contract_written = False  # run_contract.md is on disk as rendered (attempts.prepare)
        # `rlm run --wave`: doit names of tasks held back for a later wave (doit sees them as up to date)
        self.held_back: frozenset[str] = frozenset()
        self.held_join: frozenset[str] = frozenset()  # of those, the join tasks (`--allow-join` runs them)
        # what a load-time proof that every task is settled (state.settled) established, by task id:
        # whether its report is partial, and the report's stat signature (run.session's closing check)
        self.settled_partial: dict[str, bool] = {}
        self.settled_reports: dict[str, list[int] | None] = {}
        self.workers_started = False  # an attempt started or was adopted in this run (run.session sets it)
        # planfile.recorded's memo: plan.json's stat signature and what it said then (its Recorded)
        self.plan_json_read: tuple[Any, Any] | None = None

    def task(self, task_id: str) -> TaskSpec:
        return self._tasks[task_id]

    def reload_provenance(self) -> None:
        """Forget what this process read of provenance.json; another process is writing it."""
        self.store = ProvenanceStore(self.layout.provenance_json, self.plan.run_id)

    @functools.cached_property
    def contract_text(self) -> str:
        return jinja.render_contract(self.plan)

    def prompt_text(self, task: TaskSpec) -> str:
        """Rendered on each call and never kept (10,000 prompts were a tenth of a first run's memory); the digest
        of the text last rendered in this process is what `digests` reports, so a worker's provenance always
        names the prompt it was given."""
        if self._env is None:
            self._env = jinja.environment(self.plan)
        text = jinja.render_prompt(self.plan, task, self.layout, self._env)
        if self.plan.templates_dir:  # a custom prompt that drops the mandatory lines never reaches a worker
            jinja.check_mandatory_lines(self.plan, task, self.layout, text)
        self._prompt_digests[task.id] = sha256_text(text)
        return text

    def input_paths(self, task: TaskSpec) -> list[str]:
        """Repo-relative files whose content the task depends on, sorted and unique."""
        paths = {self._tasks[dep].report_path for dep in task.depends_on}
        for rel in task.inputs:
            paths.update(config_paths.input_files(self.plan.root, rel))  # a directory: every file under it
        for pattern in task.watch:
            paths.update(config_paths.watch_files(self.plan.root, pattern, self._reports))
        return sorted(paths)

    @functools.cached_property
    def _reports(self) -> frozenset[str]:
        """Every task's report: never a watched file, so `watch: ['**/*']` converges."""
        return frozenset(t.report_path for t in self.plan.tasks)

    def _derived(self, task: TaskSpec) -> tuple[str, str, str]:
        """(prompt, contract, agent) digests: pure functions of the plan and the templates."""
        cached: Any = None
        rendered = self._prompt_digests.get(task.id)
        if self.cache is not None and rendered is None:
            cached = self.cache.get_derived(task.id)
        if isinstance(cached, list) and len(cached) == 3:
            return cached[0], cached[1], cached[2]
        contract = self.cache.get_derived(":contract") if self.cache is not None else None
        if contract is None:
            contract = sha256_text(self.contract_text)
        if rendered is None:
            self.prompt_text(task)
            rendered = self._prompt_digests[task.id]
        derived = (rendered, str(contract),
                   sha256_json(agents.describe(task, self.plan.tier(task.compute_tier))))
        if self.cache is not None:
            self.cache.set_derived(":contract", derived[1])
            self.cache.set_derived(task.id, list(derived))
        return derived

    def file_sha(self, rel: str) -> str | None:
        if self.cache is not None:
            return self.cache.file_sha(os.path.join(self._root, rel), rel)  # a str: no Path per call
        return sha256_file(self.layout.abs(rel))

    def digests(self, task: TaskSpec) -> Digests:
        prompt, contract, agent = self._derived(task)
        return Digests(
            prompt=prompt,
            contract=contract,
            agent=agent,
            inputs={path: self.file_sha(path) for path in self.input_paths(task)},
        )

    def with_own_inputs_now(self, task: TaskSpec, digests: dict[str, Any]) -> dict[str, Any]:
        """`digests` (taken before the worker started) with the inputs the task itself owns as they are now:
        a task that edits what it reads (`inputs:` inside its `owns:`) is not made stale by its own edits."""
        if not task.owns:
            return digests
        def owned(path: str) -> bool:
            return any(ownership.matches(pattern, path) for pattern in task.owns)

        inputs = {path: sha for path, sha in digests["inputs"].items() if not owned(path)}
        inputs.update({path: self.file_sha(path) for path in self.input_paths(task) if owned(path)})
        return {**digests, "inputs": dict(sorted(inputs.items()))}

    @functools.cached_property
    def report_abs(self) -> dict[str, str]:
        """Task id → its report as an absolute str, in plan order: built once, a no-op uses each more than once."""
        return {task.id: self.abs_str(task.report_path) for task in self.plan.tasks}

    @functools.cached_property
    def report_files_abs(self) -> list[str]:
        return list(self.report_abs.values())

    def abs_str(self, rel: str) -> str:
        """An absolute path as a str: thousands of pathlib objects cost a no-op run measurable time."""
        return os.path.join(self._root, rel)

    def report_file(self, task: TaskSpec) -> Path:
        found = self._report_files.get(task.id)
        if found is None:
            found = self._report_files[task.id] = self.layout.abs(task.report_path)
        return found

    def freshness(self, task: TaskSpec) -> Freshness:
        report = self.report_file(task)
        known = None
        if self.cache is not None:
            known = self.cache.report_check(report, task.report_path, task.required_sections)[:2]
        return freshness(report, task.required_sections, self.store.get(task.id), self.digests(task), known)

    def is_partial(self, task: TaskSpec) -> bool:
        """An acceptable report with a `Self-termination` section; read only when its stat signature is new."""
        known = self.settled_partial.get(task.id)
        if known is not None:
            return known
        report = self.report_file(task)
        if self.cache is not None:
            return self.cache.report_check(report, task.report_path, task.required_sections)[2]
        return reports.inspect(report, task.required_sections)[1]

    def save_cache(self) -> None:
        if self.cache is not None:
            self.cache.save()


def load_context(config_path: str | Path = "rlm.yaml") -> RunContext:
    """RunContext for rlm.yaml, its validation skipped when the cache vouches for these exact bytes."""
    path = Path(config_path)
    try:
        raw = path.read_bytes()
    except OSError:
        return RunContext(load_plan(config_path))  # let the loader word the error
    config_file = path.resolve()
    root = Path(os.path.abspath(path)).parent.resolve()  # where rlm.yaml is, even as a symlink
    cache = Cache(cache_path(root, config_file))
    key = digest("plan", hashlib.sha256(raw).hexdigest(), str(root), str(config_file), code_signature())
    plan = None
    data = cache.validated(key)
    if isinstance(data, dict) and (not data.get("templates_dir") or (root / data["templates_dir"]).is_dir()):
        try:
            # foreach: a file added or removed, or an edited items file, is a new plan to validate
            fans_out = foreach.declared(data)
            expansion = None
            if fans_out and cache.plan_expansion and foreach.sources_only(data, root) == cache.plan_sources:
                expansion = foreach.Expansion.from_json(cache.plan_expansion)
            if expansion is not None or not fans_out:
                plan = freeze(data, root, config_file, expansion)
        except Exception:  # an unexpected shape: validate afresh
            plan = None
    if plan is None:
        plan, data = load_plan_data(config_path, raw=raw)  # the bytes of the key, not a later read
        expansion = foreach.expand(data, root) if foreach.declared(data) else None
        if expansion is None or foreach.sources_digest(expansion) == plan.sources:  # the files held still
            cache.set_validated(key, data, plan.sources, expansion.as_json() if expansion else None)
        del expansion
        # Validation leaves reference cycles behind (PyYAML's loader, the checker's closures), and a run
        # loads with the collector off (tasks.load_run): a 10,000-task plan left 30 MB of them.
        gc.collect()
    templates = [tree_signature(BUILTIN_TEMPLATES, (".j2",))]
    if plan.templates_dir:
        templates.append(tree_signature(root / plan.templates_dir, (".j2",)))
    cache.bind_derived(digest("derived", key, templates, plan.sources))
    return RunContext(plan, cache=cache)
