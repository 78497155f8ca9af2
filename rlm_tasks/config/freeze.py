"""Validated rlm.yaml data → the frozen Plan (the validation cache skips straight here)."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from rlm_tasks.config import defaults, foreach
from rlm_tasks.config.isolation import ISOLATION_KEYS, freeze_setup, freeze_task
from rlm_tasks.config.records import (
    AgentSpec,
    Budget,
    Conclusion,
    ConfigError,
    Contract,
    Decision,
    Deviation,
    Executor,
    Lifecycle,
    Plan,
    Price,
    TaskSpec,
    Tier,
    Verification,
)
from rlm_tasks.config.yamlpos import format_path


def merged_agent(data: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    merged = dict(data.get("agent", {}))
    merged.update(data.get("defaults", {}).get("agent", {}))
    merged.update(task.get("agent", {}))
    return merged


def map_task_ids(expansion: foreach.Expansion) -> tuple[str, ...]:
    return tuple(g.task["id"] for g in expansion.tasks if g.section == "tasks")


def dependencies(generated: Any, expansion: foreach.Expansion, map_ids: tuple[str, ...]) -> tuple[str, ...]:
    """A verify task without `depends_on` depends on every map task: VERIFY comes after MAP, always."""
    declared = expansion.resolve(generated.task.get("depends_on", ()))
    return declared if declared or generated.section == "tasks" else map_ids


def _freeze_agent(raw: dict[str, Any]) -> AgentSpec:
    return AgentSpec(
        kind=raw.get("kind", defaults.AGENT_KIND),
        binary=raw.get("binary"),
        args=tuple(raw.get("args", ())),
        env=tuple(sorted(raw.get("env", {}).items())),
        sandbox=raw.get("sandbox", defaults.SANDBOX),
        timeout=raw.get("timeout"),
        command=tuple(raw.get("command", ())),
        report=raw.get("report", defaults.AGENT_REPORT),
        env_inherit=_inherit(raw.get("env_inherit", defaults.ENV_INHERIT)),
        mask_env=tuple(raw.get("mask_env", ())),
    )


def _inherit(value: str | list[str]) -> str | tuple[str, ...]:
    return value if isinstance(value, str) else tuple(value)


def freeze(data: dict[str, Any], root: Path, config_path: Path, expansion: foreach.Expansion | None = None) -> Plan:
    """Plan from already-validated data (the validation cache skips straight here)."""
    run_id = data["run_id"]
    task_defaults = data.get("defaults", {})
    if expansion is None:
        expansion = foreach.expand(data, root)
        if expansion.problems:  # the files changed since validation: say so rather than run a broken plan
            raise ConfigError([f"{config_path}:1:1: {format_path(p)}: {m}" for p, m in expansion.problems])
    tasks: list[TaskSpec] = []
    map_ids = map_task_ids(expansion)
    shared_agent = _freeze_agent(merged_agent(data, {}))  # every task without its own agent block: one record
    task_fallbacks = (("granularity", defaults.GRANULARITY), ("compute_tier", defaults.COMPUTE_TIER),
                      ("inputs", ()), ("context_paths", ()), ("watch", ()),
                      ("required_sections", defaults.REQUIRED_SECTIONS), ("retries", defaults.RETRIES),
                      ("escalate", defaults.ESCALATE), ("backoff_seconds", defaults.BACKOFF_SECONDS),
                      ("stall_after", None), ("owns", ()), ("accept_partial", defaults.ACCEPT_PARTIAL),
                      ("progress_every", None), ("join", defaults.JOIN),
                      *ISOLATION_KEYS)
    for section, mode in (("tasks", "map"), ("verify", "verify")):
        for generated in (g for g in expansion.tasks if g.section == section):
            raw = generated.task
            # each key: the task's own value, else defaults:, else the built-in default (a loop per task, no calls)
            pick = {key: raw[key] if key in raw else task_defaults.get(key, fallback)
                    for key, fallback in task_fallbacks}
            tasks.append(
                TaskSpec(
                    id=raw["id"],
                    goal=raw["goal"],
                    mode=mode,
                    granularity=pick["granularity"],
                    compute_tier=pick["compute_tier"],
                    depends_on=dependencies(generated, expansion, map_ids),
                    inputs=tuple(pick["inputs"]),
                    context_paths=tuple(pick["context_paths"]),
                    watch=tuple(pick["watch"]),
                    report_path=posixpath.normpath(raw.get("report_path") or defaults.report_path(run_id, raw["id"])),
                    # a contract is always given, so Contract Compliance is always required: a task may add sections
                    required_sections=_with_compliance(tuple(pick["required_sections"])),
                    agent=_freeze_agent(merged_agent(data, raw)) if "agent" in raw else shared_agent,
                    retries=pick["retries"],
                    escalate=pick["escalate"],
                    backoff_seconds=pick["backoff_seconds"],
                    stall_after=_stall_after(pick["stall_after"], pick["progress_every"]),
                    owns=tuple(pick["owns"]),
                    fanout=generated.fanout,
                    item=generated.item,
                    accept_partial=pick["accept_partial"],
                    progress_every=pick["progress_every"],
                    # a `join-` id is a join task unless the task itself says `join: false`
                    join=bool(raw["join"]) if "join" in raw else bool(pick["join"]) or raw["id"].startswith(
                        defaults.JOIN_PREFIX),
                    isolation=freeze_task(pick),
                )
            )
    tiers_raw: dict[str, dict[str, Any]] = {name: {"model": m, "effort": e} for name, (m, e) in defaults.TIERS.items()}
    for name, tier in data.get("tiers", {}).items():
        tiers_raw[name] = {**tiers_raw.get(name, {}), **tier}
    contract = data.get("contract", {})
    verification = contract.get("verification", {})
    budget = data.get("budget", {})
    decision = data.get("decision", {})
    return Plan(
        root=root,
        config_path=config_path,
        run_id=run_id,
        goal=data["goal"],
        success_criteria=tuple(data.get("success_criteria", ())),
        non_goals=tuple(data.get("non_goals", ())),
        hint_paths=tuple(data.get("hint_paths", ())),
        templates_dir=data.get("templates_dir"),
        budget=Budget(
            max_iterations=budget.get("max_iterations"),
            max_workers=budget.get("max_workers"),
            max_inflight=budget.get("max_inflight", defaults.MAX_INFLIGHT),
            max_tokens=budget.get("max_tokens"),
            max_cost_usd=budget.get("max_cost_usd"),
            stop_after_same_failures=budget.get("stop_after_same_failures", defaults.STOP_AFTER_SAME_FAILURES),
        ),
        contract=Contract(
            scope_include=tuple(contract.get("scope", {}).get("include", ())),
            scope_avoid=tuple(contract.get("scope", {}).get("avoid", ())),
            invariants=tuple(contract.get("invariants", ())),
            sequence=tuple(contract.get("sequence", ())),
            verification=Verification(
                interpreter=verification.get("interpreter"),
                cwd=verification.get("cwd"),
                env=tuple(sorted(verification.get("env", {}).items())),
                commands=tuple(verification.get("commands", ())),
            ),
            failure_policy=contract.get("failure_policy"),
        ),
        tiers=tuple(Tier(name, t["model"], t.get("effort")) for name, t in tiers_raw.items()),
        tasks=tuple(tasks),
        verify_k=data.get("verify_k", defaults.VERIFY_K),
        stale_seconds=data.get("reduce", {}).get("stale_seconds", defaults.STALE_SECONDS),
        decision=Decision(
            should_finish=decision.get("should_finish"),
            reason=decision.get("reason"),
            conclusions=tuple(
                Conclusion(c["text"], tuple(c.get("evidence", ()))) for c in decision.get("conclusions", ())
            ),
            deviations=tuple(Deviation(d["what"], d["why"], d["repair"]) for d in decision.get("deviations", ())),
        ),
        uses=tuple(data.get("uses", ())),
        lifecycle=Lifecycle(**data.get("lifecycle", {})),
        executor=Executor(**data.get("executor", {})),
        fanouts=tuple((name, tuple(ids)) for name, ids in expansion.fanouts.items()),
        sources=foreach.sources_digest(expansion),
        prices=_prices(data.get("prices", {})),
        setup=freeze_setup(data.get("setup", {})),
    )


def _prices(declared: dict[str, Any]) -> tuple[tuple[str, Price], ...]:
    table = {model: Price(*numbers) for model, numbers in defaults.PRICES.items()}
    for model, price in declared.items():
        table[model] = Price(price["input"], price.get("cached_input", price["input"]), price["output"])
    return tuple(sorted(table.items()))


def _stall_after(declared: float | None, progress_every: float | None) -> float | None:
    """A worker asked for a progress line every M seconds is stalled once it missed about three of them."""
    if declared is not None or progress_every is None:
        return declared
    return defaults.STALL_PROGRESS_FACTOR * progress_every


def _with_compliance(declared: tuple[str, ...]) -> tuple[str, ...]:
    """The task's required sections, with Contract Compliance added unless it is there (in any spelling)."""
    named = {" ".join(section.split()).casefold() for section in declared}
    missing = tuple(s for s in defaults.REQUIRED_SECTIONS if s.casefold() not in named)
    return tuple(dict.fromkeys(declared)) + missing
