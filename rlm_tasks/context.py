"""One run as the modules see it: plan + layout + provenance, with renders cached per process."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from . import agents, render
from .config import Plan, TaskSpec
from .layout import RunLayout
from .provenance import Digests, Freshness, ProvenanceStore, freshness, sha256_file, sha256_json, sha256_text


class RunContext:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.layout = RunLayout(plan.root, plan.run_id)
        self.store = ProvenanceStore(self.layout.provenance_json, plan.run_id)
        self._env: jinja2.Environment | None = None

    @functools.cached_property
    def contract_text(self) -> str:
        return render.render_contract(self.plan)

    @functools.cached_property
    def _prompts(self) -> dict[str, str]:
        return {}

    def prompt_text(self, task: TaskSpec) -> str:
        cached = self._prompts.get(task.id)
        if cached is None:
            if self._env is None:
                self._env = render.environment(self.plan)
            cached = self._prompts[task.id] = render.render_prompt(self.plan, task, self.layout, self._env)
        return cached

    def input_paths(self, task: TaskSpec) -> list[str]:
        """Repo-relative files whose content the task depends on, sorted and unique."""
        paths = {self.plan.task(dep).report_path for dep in task.depends_on}
        paths.update(task.inputs)
        for pattern in task.watch:
            paths.update(p.relative_to(self.plan.root).as_posix()
                         for p in self.plan.root.glob(pattern) if p.is_file())
        return sorted(paths)

    def digests(self, task: TaskSpec) -> Digests:
        tier = self.plan.tier(task.compute_tier)
        return Digests(
            prompt=sha256_text(self.prompt_text(task)),
            contract=sha256_text(self.contract_text),
            agent=sha256_json(agents.describe(task, tier)),
            inputs={path: sha256_file(self.layout.abs(path)) for path in self.input_paths(task)},
        )

    def report_file(self, task: TaskSpec) -> Path:
        return self.layout.abs(task.report_path)

    def freshness(self, task: TaskSpec) -> Freshness:
        return freshness(self.report_file(task), task.required_sections, self.store.get(task.id), self.digests(task))
