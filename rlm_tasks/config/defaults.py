"""Every default of rlm.yaml, in one table.

The frozen Plan (config/records.py, built by config/freeze.py) takes its defaults from these names, and
rlm.schema.json states the same values as `default` keywords, for editors and
readers; tests/test_defaults.py keeps the schema equal to SCHEMA_DEFAULTS.
A key is the setting's place in rlm.yaml: `task.*` is any entry of `tasks:`,
`verify:` or `defaults:`, `agent.*` any agent block.
"""

from __future__ import annotations

from typing import Any

from rlm_tasks.agents import KINDS
from rlm_tasks.layout import reports_rel

MAX_INFLIGHT = 4
MAX_WATCH_FILES = 10_000
STOP_AFTER_SAME_FAILURES = 3  # attempts in a row failing with one cause (endpoint down, auth...) stop the run
STALE_SECONDS = 1200
TTL_DAYS = 14
KEEP_FOREVER = False
LOCK_STALE_HOURS = 24
TRANSIENT = "compress"

GRANULARITY = "meso"
COMPUTE_TIER = "standard"
REQUIRED_SECTIONS = ("Contract Compliance",)
RETRIES = 0
ESCALATE = False
BACKOFF_SECONDS = 2.0
ACCEPT_PARTIAL = False
JOIN = False  # `join:`; an id starting with JOIN_PREFIX is a join task too
JOIN_PREFIX = "join-"  # the workflow's naming of join tasks (`rlm run --wave` starts them only with --allow-join)
STALL_PROGRESS_FACTOR = 3  # progress_every without stall_after: stalled after three missed progress lines

AGENT_KIND = "codex"
SANDBOX = "workspace-write"
AGENT_REPORT = "file"

# compute_tier → (model, effort): the default kind's, whatever a task's kind (so no digest changed when the kinds
# moved to rlm_tasks/agents/; each kind's own tiers are its `rlm init` starter's); `tiers:` overrides or extends them
TIERS = dict(KINDS[AGENT_KIND].TIERS)
TIER_ORDER = ("standard", "standard-plus", "heavy")  # `escalate: true` climbs this ladder on each retry

VERIFY_K = 5  # verify tasks per iteration: the default of verify_k, and its cap
EXECUTOR_KIND = "local"
EXECUTOR_FILESYSTEM = "shared"
MAX_INFLIGHT_CAP = 256  # rlm.schema.json budget.max_inflight maximum; also the cap of `-n`

ISOLATION = "none"
GATE_TIMEOUT = 1800.0
EXPECTS_CHANGES = False
DRIFT = "refuse"
SETUP_TIMEOUT = 600.0
ENV_INHERIT = "all"  # agent.env_inherit: the whole environment

# US dollars per million tokens (input, cached input, output) of every kind's models, as each kind's module
# in rlm_tasks/agents/ publishes them; `prices:` in rlm.yaml overrides or extends it. An agent's own cost wins.
PRICES = {model: price for kind in KINDS.values() for model, price in kind.PRICES.items()}

SCHEMA_DEFAULTS: dict[str, Any] = {
    "verify_k": VERIFY_K,
    "executor.kind": EXECUTOR_KIND,
    **{f"tiers.{name}": {"model": model, "effort": effort} for name, (model, effort) in TIERS.items()},
    "budget.max_inflight": MAX_INFLIGHT,
    "budget.max_watch_files": MAX_WATCH_FILES,
    "budget.stop_after_same_failures": STOP_AFTER_SAME_FAILURES,
    "reduce.stale_seconds": STALE_SECONDS,
    "lifecycle.ttl_days": TTL_DAYS,
    "lifecycle.keep_forever": KEEP_FOREVER,
    "lifecycle.lock_stale_hours": LOCK_STALE_HOURS,
    "lifecycle.transient": TRANSIENT,
    "task.granularity": GRANULARITY,
    "task.compute_tier": COMPUTE_TIER,
    "task.required_sections": list(REQUIRED_SECTIONS),
    "task.retries": RETRIES,
    "task.escalate": ESCALATE,
    "task.backoff_seconds": BACKOFF_SECONDS,
    "task.accept_partial": ACCEPT_PARTIAL,
    "task.join": JOIN,
    "task.isolation": ISOLATION,
    "task.gate_timeout": GATE_TIMEOUT,
    "task.expects_changes": EXPECTS_CHANGES,
    "task.drift": DRIFT,
    "setup.timeout": SETUP_TIMEOUT,
    "executor.filesystem": EXECUTOR_FILESYSTEM,
    "agent.kind": AGENT_KIND,
    "agent.sandbox": SANDBOX,
    "agent.report": AGENT_REPORT,
    "agent.env_inherit": ENV_INHERIT,
}


def report_path(run_id: str, task_id: str) -> str:
    """A task's report when it sets no `report_path` (a template the schema can only describe)."""
    return f"{reports_rel(run_id)}/{task_id}.md"
