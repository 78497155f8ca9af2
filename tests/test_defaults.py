"""One defaults table (config/defaults.py) feeds the plan; rlm.schema.json documents the same values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlm_tasks.config import defaults
from rlm_tasks.config.isolation import Isolation
from rlm_tasks.config.plan import load_plan
from rlm_tasks.resources import SCHEMA_DIR


def schema_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """`<block>.<property>` → its `default`, for the top-level blocks and the $defs (task, agent); a top-level
    setting that is no block (verify_k) by its own name."""
    blocks = {**schema["properties"], **schema["$defs"]}
    found = {name: node["default"] for name, node in schema["properties"].items() if "default" in node}
    found.update({f"{block}.{name}": prop["default"]
                  for block, node in blocks.items()
                  for name, prop in (node.get("properties") or {}).items() if "default" in prop})
    return found


def test_the_schema_documents_exactly_the_table() -> None:
    schema = json.loads((SCHEMA_DIR / "rlm.schema.json").read_text(encoding="utf-8"))
    assert schema_defaults(schema) == defaults.SCHEMA_DEFAULTS


def test_the_comparison_fails_when_a_default_differs() -> None:
    schema = json.loads((SCHEMA_DIR / "rlm.schema.json").read_text(encoding="utf-8"))
    schema["$defs"]["task"]["properties"]["backoff_seconds"]["default"] = 5
    assert schema_defaults(schema)["task.backoff_seconds"] == 5 != defaults.SCHEMA_DEFAULTS["task.backoff_seconds"]


def test_a_minimal_plan_gets_the_table(tmp_path: Path) -> None:
    (tmp_path / "rlm.yaml").write_text("version: 1\nrun_id: r\ngoal: G\ntasks: [{id: a, goal: A}]\n")
    plan = load_plan(tmp_path / "rlm.yaml")
    (task,) = plan.tasks
    got = {
        "verify_k": plan.verify_k,
        "executor.kind": plan.executor.kind,
        **{f"tiers.{tier.name}": {"model": tier.model, "effort": tier.effort} for tier in plan.tiers},
        "budget.max_inflight": plan.budget.max_inflight,
        "budget.stop_after_same_failures": plan.budget.stop_after_same_failures,
        "reduce.stale_seconds": plan.stale_seconds,
        "lifecycle.ttl_days": plan.lifecycle.ttl_days,
        "lifecycle.keep_forever": plan.lifecycle.keep_forever,
        "lifecycle.lock_stale_hours": plan.lifecycle.lock_stale_hours,
        "lifecycle.transient": plan.lifecycle.transient,
        "task.granularity": task.granularity,
        "task.compute_tier": task.compute_tier,
        "task.required_sections": list(task.required_sections),
        "task.retries": task.retries,
        "task.escalate": task.escalate,
        "task.backoff_seconds": task.backoff_seconds,
        "task.accept_partial": task.accept_partial,
        "task.join": task.join,
        "task.isolation": "none" if task.isolation is None else "worktree",
        "task.gate_timeout": Isolation().gate_timeout,
        "task.expects_changes": Isolation().expects_changes,
        "task.drift": Isolation().drift,
        "setup.timeout": plan.setup.timeout,
        "executor.filesystem": plan.executor.filesystem,
        "agent.kind": task.agent.kind,
        "agent.sandbox": task.agent.sandbox,
        "agent.report": task.agent.report,
        "agent.env_inherit": task.agent.env_inherit,
    }
    expected = {k: v for k, v in defaults.SCHEMA_DEFAULTS.items() if k != "budget.max_watch_files"}
    assert got == expected
    assert task.report_path == ".rlm/runs/r/artifacts/reports/a.md" == defaults.report_path("r", "a")


def test_the_tier_ladder_is_the_default_tiers_in_order() -> None:
    assert tuple(defaults.TIERS) == defaults.TIER_ORDER
    assert defaults.TIER_ORDER[0] == defaults.COMPUTE_TIER


def test_the_schema_caps_are_the_table() -> None:
    schema = json.loads((SCHEMA_DIR / "rlm.schema.json").read_text(encoding="utf-8"))
    assert schema["properties"]["verify_k"]["maximum"] == defaults.VERIFY_K
    assert schema["properties"]["budget"]["properties"]["max_inflight"]["maximum"] == defaults.MAX_INFLIGHT_CAP
