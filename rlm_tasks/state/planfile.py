"""plan.json and plan iterations.

One iteration is one PLAN → MAP → REDUCE → VERIFY → DECIDE pass. Edits inside
an iteration (a fixed goal, the verify tasks the skill asks for, a retry) are
no new iteration: plan.json is rewritten with the same number. A new iteration
starts when the plan changes after DECIDE recorded `should_finish: false` in
final.json for the current one; the previous plan.json is then kept as
artifacts/plan.iter-<n>.json. A plan change that would pass
budget.max_iterations is refused and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from rlm_tasks import jsonio
from rlm_tasks.errors import UserError
from rlm_tasks.state.cache import Signature, stat_signature
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import sha256_json, sha256_text

FORMAT_VERSION = 1


class IterationRefused(UserError):
    """The decision said iterate, but budget.max_iterations leaves no iteration for the changed plan."""


def _task_record(ctx: RunContext, task: Any) -> dict[str, Any]:
    tier = ctx.plan.tier(task.compute_tier)
    record = {
        "id": task.id,
        "worker_id": task.worker_id,
        "doit_name": task.doit_name,
        "mode": task.mode,
        "goal": task.goal,
        "granularity": task.granularity,
        "compute_tier": task.compute_tier,
        "model": tier.model,
        "effort": tier.effort,
        "depends_on": list(task.depends_on),
        "inputs": list(task.inputs),
        "watch": list(task.watch),
        "context_paths": list(task.context_paths),
        "owns": list(task.owns),
        "report_path": task.report_path,
        "prompt_path": ctx.layout.prompt_rel(task.worker_id),
        "agent_kind": task.agent.kind,
    }
    if task.fanout is not None:  # only generated tasks: a plan without foreach keeps its plan.json bytes
        record["foreach"] = {"name": task.fanout, "item": task.item}
    record["definition_sha256"] = sha256_json(record)
    return record


def plan_record(ctx: RunContext, iteration: int, changed: dict[str, Any],
                tasks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """plan.json; `changed` holds changed_since_last_iteration (and contract_changed when there was one)."""
    plan = ctx.plan
    record = {
        "version": FORMAT_VERSION,
        "run_id": plan.run_id,
        "config_path": config_rel(ctx),
        "goal": plan.goal,
        "success_criteria": list(plan.success_criteria),
        "hint_paths": list(plan.hint_paths),
        "iteration": iteration,
        "changed_since_last_iteration": {k: v for k, v in changed.items() if k != "contract_changed"},
        "contract_path": ctx.layout.contract_rel,
        "contract_sha256": sha256_text(ctx.contract_text),
        "budget": {
            "max_iterations": plan.budget.max_iterations,
            "max_workers": plan.budget.max_workers,
            "max_inflight": plan.budget.max_inflight,
        },
        "verify_k": plan.verify_k,
        "tasks": [_task_record(ctx, task) for task in plan.tasks] if tasks is None else tasks,
        **({"fanouts": {name: list(ids) for name, ids in plan.fanouts}} if plan.fanouts else {}),
    }
    if "contract_changed" in changed:
        record["contract_changed"] = changed["contract_changed"]
    return record


def _definitions(plan_json: dict[str, Any]) -> dict[str, Any]:
    tasks = plan_json.get("tasks")
    return {t["id"]: t.get("definition_sha256") for t in (tasks if isinstance(tasks, list) else [])
            if isinstance(t, dict) and isinstance(t.get("id"), str)}


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    """What changed between two plans, as task id → definition_sha256."""
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "edited": sorted(i for i in set(after) & set(before) if after[i] != before[i]),
    }


def _changes(ctx: RunContext, definitions: dict[str, Any], since: dict[str, Any] | None) -> dict[str, Any]:
    """changed_since_last_iteration against the plan `since` (None: everything is new), and contract_changed."""
    if since is None:
        return {"added": sorted(t.id for t in ctx.plan.tasks), "removed": [], "edited": []}
    return {**_diff(_definitions(since), definitions),
            "contract_changed": since.get("contract_sha256") != sha256_text(ctx.contract_text)}


def _with_changes(ctx: RunContext, iteration: int, since: dict[str, Any] | None) -> dict[str, Any]:
    """The plan.json of `iteration`, with what changed since the plan `since` (None: everything is new)."""
    tasks = [_task_record(ctx, task) for task in ctx.plan.tasks]
    definitions = {t["id"]: t["definition_sha256"] for t in tasks}
    return plan_record(ctx, iteration, _changes(ctx, definitions, since), tasks)


def decided_to_iterate(ctx: RunContext, iteration: int) -> bool:
    """final.json of this iteration records the user's decision `should_finish: false`."""
    try:
        final = jsonio.read_json(ctx.layout.run_dir / "final.json")
    except ValueError:
        return False
    decision = final.get("termination_decision") if isinstance(final, dict) else None
    return (isinstance(decision, dict) and final.get("iteration") == iteration
            and decision.get("should_finish") is False)


def _previous_iteration(ctx: RunContext, iteration: int) -> dict[str, Any] | None:
    if iteration <= 1:
        return None
    try:
        kept = jsonio.read_json(ctx.layout.abs(f"{ctx.layout.artifacts_rel}/plan.iter-{iteration - 1}.json"))
    except ValueError:
        return None
    return kept if isinstance(kept, dict) else None


def next_record(ctx: RunContext) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the plan.json to write, the previous plan.json when this is a new iteration)."""
    try:
        previous = jsonio.read_json(ctx.layout.plan_json)
    except ValueError:
        previous = None
    if not isinstance(previous, dict) or not isinstance(previous.get("iteration"), int):
        return _with_changes(ctx, 1, None), None
    iteration = int(previous["iteration"])
    same = _with_changes(ctx, iteration, _previous_iteration(ctx, iteration))
    if _diff(_definitions(previous), _definitions(same)) == {"added": [], "removed": [], "edited": []} \
            and previous.get("contract_sha256") == same["contract_sha256"]:
        return same, None  # nothing changed since plan.json was written
    if decided_to_iterate(ctx, iteration):
        return _with_changes(ctx, iteration + 1, previous), previous
    return same, None  # an edit inside the iteration


class Recorded(NamedTuple):
    """What plan.json on disk says about the plan it was written for: enough to tell the iteration."""

    iteration: int
    definitions: dict[str, Any]  # task id → definition_sha256
    contract_sha256: Any


def recorded(ctx: RunContext) -> Recorded | None:
    """plan.json's iteration and definitions, or None before the first run (or when it is no plan.json).

    Kept per stat signature: a 10,000-task plan.json parses into 20 MB of objects, and the budget asks for
    the iteration at every REDUCE and at the first attempt of a run.
    """
    signature, _ = stat_signature(ctx.layout.plan_json)
    known = ctx.plan_json_read
    if known is not None and signature is not None and known[0] == signature:
        remembered: Recorded | None = known[1]
        return remembered
    return _remember(ctx, _read(ctx), signature)


def _read(ctx: RunContext) -> Any:
    try:
        return jsonio.read_json(ctx.layout.plan_json)
    except ValueError:
        return None


def _remember(ctx: RunContext, data: Any, signature: Signature | None) -> Recorded | None:
    """What `recorded` returns while plan.json keeps `signature`, from `data` (plan.json's content then)."""
    found = None
    if isinstance(data, dict) and isinstance(data.get("iteration"), int):
        found = Recorded(data["iteration"], _definitions(data), data.get("contract_sha256"))
    ctx.plan_json_read = (signature, found)
    return found


def current_iteration(ctx: RunContext) -> int:
    """The iteration this plan runs as: plan.json's, or the next one when the plan changed after DECIDE.

    next_record's answer, from the task definitions alone (each task's record built and dropped in turn),
    and from plan.json's iteration line alone unless DECIDE said iterate (changed or not, the plan then
    runs as the same iteration): parsing a 10,000-task plan.json at a run's first attempt cost 20 MB.
    """
    iteration = _iteration_on_disk(ctx)
    if iteration is not None and not decided_to_iterate(ctx, iteration):
        return iteration
    previous = recorded(ctx)
    if previous is None:
        return 1
    definitions = {task.id: _task_record(ctx, task)["definition_sha256"] for task in ctx.plan.tasks}
    if _diff(previous.definitions, definitions) == {"added": [], "removed": [], "edited": []} \
            and previous.contract_sha256 == sha256_text(ctx.contract_text):
        return previous.iteration
    return previous.iteration + 1 if decided_to_iterate(ctx, previous.iteration) else previous.iteration


def recorded_iteration(ctx: RunContext) -> int:
    """The iteration plan.json on disk records (0 before the first run): what the budget has used."""
    iteration = _iteration_on_disk(ctx)
    if iteration is not None:  # plan.json as rlm writes it: its iteration line, the rest unread
        return iteration
    found = recorded(ctx)
    return found.iteration if found is not None else 0


def refusal(ctx: RunContext, iteration: int) -> str | None:
    limit = ctx.plan.budget.max_iterations
    if limit is not None and iteration > limit:
        return (f"budget exhausted: max_iterations ({iteration - 1} of {limit} iterations used); the decision said "
                f"iterate, but no iteration is left for the changed plan: `doit final` records the run as finished "
                f"with the budget exhausted, or raise budget.max_iterations in rlm.yaml")
    return None


class _Records(list[dict[str, Any]]):
    """plan.json's task records, each built as json's encoder reaches it (it iterates lists) and then dropped:
    a 10,000-task plan is never 20 MB of records in memory at once. Their definition digests are collected."""

    def __init__(self, ctx: RunContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.definitions: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.ctx.plan.tasks)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for task in self.ctx.plan.tasks:
            record = _task_record(self.ctx, task)
            self.definitions[task.id] = record["definition_sha256"]
            yield record


_ITERATION = re.compile(rb'^  "iteration": (\d+),?$')  # a top-level key: nothing nested is indented by two


def _iteration_on_disk(ctx: RunContext) -> int | None:
    """plan.json's iteration, read from its top-level line without parsing the rest (None: not found)."""
    try:
        with open(ctx.layout.plan_json, "rb") as handle:
            for line in handle:
                found = _ITERATION.match(line.rstrip(b"\r\n"))
                if found:
                    return int(found.group(1))
    except OSError:
        return None
    return None


def is_current(ctx: RunContext) -> bool:
    """plan.json and the contract on disk already say, byte for byte, what this plan would write.

    plan.json is compared with what would be written as the encoder produces it, each task's record built
    and dropped in turn: parsing a 10,000-task plan.json and building its record cost a first run 30 MB. When
    it holds, plan.json is no new iteration either (the plan has not changed since it was written), and what
    `recorded` returns is known without reading it again.
    """
    signature, _ = stat_signature(ctx.layout.plan_json)
    iteration = _iteration_on_disk(ctx)
    if iteration is None:
        return False
    since = _previous_iteration(ctx, iteration)
    definitions = None
    if since is not None:  # the changes since the previous iteration name edited tasks: a first pass
        first = _Records(ctx)
        for _ in first:
            pass
        definitions = first.definitions
    records = _Records(ctx)
    record = plan_record(ctx, iteration, _changes(ctx, definitions or {}, since), records)
    if not jsonio.holds(ctx.layout.plan_json, record):
        return False
    ctx.plan_json_read = (signature, Recorded(iteration, records.definitions, record["contract_sha256"]))
    contract = ctx.layout.abs(ctx.layout.contract_rel)
    return contract.exists() and contract.read_text(encoding="utf-8") == ctx.contract_text


def config_rel(ctx: RunContext) -> str:
    """The config file this run is declared in, repo-relative (plan.json records it)."""
    try:
        return ctx.plan.config_path.relative_to(ctx.plan.root).as_posix()
    except ValueError:
        return ctx.plan.config_path.name


_CONFIG_PATH = re.compile(rb'"config_path": ("(?:[^"\\]|\\.)*")')
_AFTER_CONFIG_PATH = b'"contract_path": '  # sorted keys: past it, plan.json has no config_path
_SCAN_CHUNK = 64 * 1024


def recorded_config_path(ctx: RunContext) -> str | None:
    """plan.json's `config_path`, read from its head (keys are sorted, so it comes before the tasks): a
    10,000-task plan.json is never parsed whole for it."""
    head = b""
    try:
        with open(ctx.layout.plan_json, "rb") as handle:
            while True:
                chunk = handle.read(_SCAN_CHUNK)
                head += chunk
                end = head.find(_AFTER_CONFIG_PATH)
                found = _CONFIG_PATH.search(head, 0, end if end >= 0 else len(head))
                if found:
                    value = jsonio.loads(found.group(1).decode("utf-8", "replace"))
                    return value if isinstance(value, str) else None
                if not chunk or end >= 0:
                    return None
                head = head[-_SCAN_CHUNK:]  # a key split across two chunks is still found
    except (OSError, ValueError):
        return None


def claimed_elsewhere(ctx: RunContext) -> str | None:
    """Why this config may not write the run: another config file of the repository that wrote its plan.json
    still declares the same run_id (two runs would share one record). None when the run is this file's."""
    other = recorded_config_path(ctx)
    ours = config_rel(ctx)
    if not isinstance(other, str) or other == ours:
        return None
    try:
        import yaml  # only when two files claimed the run: a run never pays for it otherwise

        data = yaml.safe_load((ctx.plan.root / other).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None  # that file is gone (renamed) or unreadable: the run is this file's now
    if not isinstance(data, dict) or data.get("run_id") != ctx.plan.run_id:
        return None
    return (f"{ours}: run_id '{ctx.plan.run_id}' is also declared by {other}, whose plan is "
            f"{ctx.layout.run_dir_rel}/plan.json; two config files cannot share a run: give this one its own run_id")


def write_plan(ctx: RunContext) -> bool:
    """Write plan.json (keeping the previous iteration's) and the contract; True if anything changed."""
    shared = claimed_elsewhere(ctx)
    if shared is not None:
        raise UserError(shared)
    record, previous = next_record(ctx)
    why = refusal(ctx, int(record["iteration"]))
    if why is not None:
        raise IterationRefused(why)  # a refused run uses nothing: plan.json stays as it is
    if previous is not None:
        kept = ctx.layout.abs(f"{ctx.layout.artifacts_rel}/plan.iter-{previous['iteration']}.json")
        jsonio.write_json(kept, previous)
    changed = jsonio.write_json(ctx.layout.plan_json, record, if_changed=True)
    _remember(ctx, record, stat_signature(ctx.layout.plan_json)[0])
    contract = jsonio.write_text_if_changed(ctx.layout.abs(ctx.layout.contract_rel), ctx.contract_text)
    return changed or contract
