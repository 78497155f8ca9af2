"""The Jinja2 environment (StrictUndefined) and what it renders: the contract and worker prompts."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import TYPE_CHECKING, Any

from rlm_tasks import jsonio, sandbox
from rlm_tasks.agents import kind_of
from rlm_tasks.config.records import Plan, TaskSpec
from rlm_tasks.errors import UserError
from rlm_tasks.layout import RunLayout
from rlm_tasks.render import escape, prompt_rules
from rlm_tasks.resources import TEMPLATE_DIR as BUILTIN_TEMPLATES

if TYPE_CHECKING:
    import jinja2


CONTRACT_TEMPLATE = "run_contract.md.j2"
PROMPT_TEMPLATE = "worker_prompt.md.j2"


class TemplateError(UserError):
    """A template failed to render: syntax error or undefined variable, with the template named."""

    exit_code = 2


def environment(plan: Plan) -> jinja2.Environment:
    """Sandboxed (rlm_tasks.sandbox): a `templates_dir` template and every value it prints come from
    rlm.yaml or files a worker can change, and none of them may run code."""
    import jinja2  # imported when needed: a no-op run renders nothing (bench/)

    search = [str(BUILTIN_TEMPLATES)]
    loader: jinja2.BaseLoader = jinja2.FileSystemLoader(search)
    if plan.templates_dir:
        loader = jinja2.ChoiceLoader([_confined_loader(plan, plan.templates_dir), loader])
    env = sandbox.environment(
        loader=loader,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = escape.md  # untrusted text into final.md: reports, decision, goals
    env.filters["code"] = escape.code
    return env


def _confined_loader(plan: Plan, templates_dir: str) -> jinja2.BaseLoader:
    """templates_dir's templates, none of them read through a symlink leading out of the repository (the
    rendered contract and prompts are committed: /etc/passwd would be published)."""
    import jinja2

    class Confined(jinja2.FileSystemLoader):
        def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
            source, filename, uptodate = super().get_source(environment, template)
            real = os.path.realpath(filename)
            base = os.path.realpath(plan.root)
            if not real.startswith(base + os.sep):
                shown = os.path.relpath(filename, plan.root)
                raise TemplateError(f"{shown} resolves outside the repository (to {real}); not read")
            return source, filename, uptodate

    return Confined(str(plan.root / templates_dir))


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    import jinja2

    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise TemplateError(f"{where}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{name}: undefined variable: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template not found: {exc.name}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(_runtime_problem(env, name, exc)) from None
    except (ArithmeticError, TypeError, ValueError, LookupError) as exc:  # a filter given the wrong type
        raise TemplateError(_runtime_problem(env, name, exc)) from None


def _runtime_problem(env: jinja2.Environment, name: str, exc: BaseException) -> str:
    """FILE:LINE: what went wrong while a template ran (the sandbox refusing something, most often)."""
    filename = None
    if env.loader is not None:
        with contextlib.suppress(Exception):
            filename = env.loader.get_source(env, name)[1]
    line = sandbox.template_line(exc, filename)
    where = f"{_shown(filename) if filename else name}:{line}" if line else (_shown(filename) if filename else name)
    if sandbox.is_violation(exc):
        return sandbox.violation(where, exc)
    return f"{where}: template failed: {exc}"


def _shown(filename: str) -> str:
    rel = os.path.relpath(filename)
    return filename if rel.startswith("..") else rel


def render_string(template: str, context: dict[str, Any], what: str) -> str:
    """Render a one-line template from rlm.yaml (e.g. a command argv item)."""
    if "{" not in template:  # no Jinja syntax: most argv items, every attempt
        return template
    import jinja2

    try:
        rendered: str = _compiled(template).render(context)
        return rendered
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{what}: template syntax error in {template!r}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{what}: undefined variable in {template!r}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        if sandbox.is_violation(exc):
            raise TemplateError(sandbox.violation(f"{what}: {template!r}", exc)) from None
        raise TemplateError(f"{what}: cannot render {template!r}: {exc}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise TemplateError(f"{what}: cannot render {template!r}: {exc}") from None


@functools.lru_cache(maxsize=256)
def _compiled(template: str) -> Any:
    """One compile per distinct argv template, not one per attempt (a compile is ~1 ms; a Template renders
    from any thread)."""
    return sandbox.environment().from_string(template)


def plan_context(plan: Plan) -> dict[str, Any]:
    c = plan.contract
    return {
        "run_id": plan.run_id,
        "goal": plan.goal,
        "success_criteria": list(plan.success_criteria),
        "non_goals": list(plan.non_goals),
        "hint_paths": list(plan.hint_paths),
        "scope": {"include": list(c.scope_include), "avoid": list(c.scope_avoid)},
        "invariants": list(c.invariants),
        "sequence": list(c.sequence),
        "verification": {
            "interpreter": c.verification.interpreter,
            "cwd": c.verification.cwd,
            "env": dict(c.verification.env),
            "commands": list(c.verification.commands),
        },
        "failure_policy": c.failure_policy,
        # every task's `owns`, for a custom template: the built-in contract does not list it, since a contract
        # that changes with one task's ownership makes every task of the run stale
        "ownership": list(_ownership(plan)),
    }


_last_ownership: tuple[Plan, list[dict[str, Any]]] | None = None


def _ownership(plan: Plan) -> list[dict[str, Any]]:
    """Computed once per plan: every prompt's context includes it, and a loop over all tasks per
    prompt made rendering a 5,000-task plan quadratic (bench/scaling.py)."""
    global _last_ownership
    last = _last_ownership
    if last is None or last[0] is not plan:
        owners = [{"worker_id": t.worker_id, "owns": list(t.owns)} for t in plan.tasks if t.owns]
        last = _last_ownership = (plan, owners)
    return last[1]


def render_contract(plan: Plan) -> str:
    return _render(environment(plan), CONTRACT_TEMPLATE, plan_context(plan))


def task_context(plan: Plan, task: TaskSpec, layout: RunLayout) -> dict[str, Any]:
    """Everything a prompt (or a command argv item) may refer to. Paths are repo-relative."""
    tier = plan.tier(task.compute_tier)
    input_reports = [plan.task(dep).report_path for dep in task.depends_on]
    hint_paths = [layout.run_dir_rel, layout.contract_rel, *plan.hint_paths, *task.context_paths]
    envelope = {
        "run_id": plan.run_id,
        "worker_id": task.worker_id,
        "mode": task.mode,
        "granularity": task.granularity,
        "compute_tier": task.compute_tier,
        "goal": task.goal,
        "report_path": task.report_path,
        "hint_paths": list(dict.fromkeys(hint_paths)),
        "input_reports": input_reports,
        "inputs": list(task.inputs),
    }
    return {
        **plan_context(plan),
        "run_goal": plan.goal,
        "task": task,
        "worker_id": task.worker_id,
        "mode": task.mode,
        "granularity": task.granularity,
        "compute_tier": task.compute_tier,
        "model": tier.model,
        "effort": tier.effort,
        "task_goal": task.goal,
        "report_path": task.report_path,
        "prompt_path": layout.prompt_rel(task.worker_id),
        "contract_path": layout.contract_rel,
        "run_dir": layout.run_dir_rel,
        "input_reports": input_reports,
        "inputs": list(task.inputs),
        "context_paths": list(task.context_paths),
        "owns": list(task.owns),
        "required_sections": list(task.required_sections),
        "progress_every": task.progress_every,
        "stall_after": task.stall_after,
        "envelope": envelope,
        "envelope_json": jsonio.indented(envelope),
    }


def render_prompt(plan: Plan, task: TaskSpec, layout: RunLayout, env: jinja2.Environment | None = None) -> str:
    return _render(env or environment(plan), PROMPT_TEMPLATE, task_context(plan, task, layout))


def command_context(plan: Plan, task: TaskSpec, layout: RunLayout) -> dict[str, Any]:
    """Context of `agent.command` items: the task's fields plus where things are on this machine."""
    return {**task_context(plan, task, layout), "python": sys.executable, "root": str(plan.root)}


def check_commands(plan: Plan, layout: RunLayout) -> None:
    """Render every command worker's argv items as a first attempt would: TemplateError (a sandbox refusal, a
    filter on the wrong type) before the run rather than in its middle."""
    for task in plan.tasks:
        if kind_of(task.agent.kind).DEFAULT_BINARY is not None or not any("{" in i for i in task.agent.command):
            continue  # only a kind whose argv is agent.command renders templates in it
        tier = plan.tier(task.compute_tier)
        context = command_context(plan, task, layout) | {"model": tier.model, "effort": tier.effort, "attempt": 1}
        for i, item in enumerate(task.agent.command):
            if "{" in item:
                render_string(item, context, f"{plan.config_path.name}: agent.command[{i}]")


FINAL_TEMPLATE = "final.md.j2"


def render_final(plan: Plan, context: dict[str, Any]) -> str:
    return _render(environment(plan), FINAL_TEMPLATE, {**plan_context(plan), **context})


def check_mandatory_lines(plan: Plan, task: TaskSpec, layout: RunLayout, prompt: str) -> None:
    """TemplateError when a rendered prompt dropped a line every worker prompt keeps (render.prompt_rules)."""
    lacking = prompt_rules.missing_lines(prompt, layout.contract_rel, task.report_path)
    if lacking:
        raise TemplateError(f"{plan.templates_dir or 'templates'}/{PROMPT_TEMPLATE}: the prompt of task '{task.id}' "
                            f"drops {', '.join(lacking)}; every worker prompt keeps them")


def check_templates(plan: Plan, layout: RunLayout) -> None:
    """Render the contract and every prompt in memory, and compile final.md.j2: TemplateError at the first
    syntax error, undefined variable or template read through a link leading out of the repository."""
    import jinja2

    env = environment(plan)
    render_contract(plan)
    for task in plan.tasks:
        check_mandatory_lines(plan, task, layout, render_prompt(plan, task, layout, env))
    try:
        env.get_template(FINAL_TEMPLATE)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{exc.filename or FINAL_TEMPLATE}:{exc.lineno}: template syntax error: {exc.message}"
                            ) from None
