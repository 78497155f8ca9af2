"""Cost of attempts: the agent's own figure, else tokens times `prices:`; totals per task, tier and run.

Every attempt that reported usage keeps it in its committed attempt record (artifacts/attempts/<id>.json,
failed attempts included): every total (status, reduce_state, final, the budget) is summed from those, so the
run's machine, a fresh clone, CI and an archive agree. `logs/<id>.attempt-<n>.usage.json` is the same figure
next to the log, for a person reading logs; nothing counts it.
A model with no price and no figure of its own counts its tokens, never a guessed cost.
"""

from __future__ import annotations

import math
from typing import Any

from rlm_tasks import jsonio
from rlm_tasks.agents.base import MAX_COST_USD, MAX_TOKENS, Usage
from rlm_tasks.config.records import Plan, Price
from rlm_tasks.state import history
from rlm_tasks.state.context import RunContext

TOKEN_KEYS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
TOP_TASKS = 10


def price_of(plan: Plan, model: str | None) -> Price | None:
    if model is None:
        return None
    for name, price in plan.prices:
        if name == model:
            return price
    return None


def attempt_record(plan: Plan, usage: Usage, model: str) -> dict[str, Any]:
    """The usage and cost of one attempt as provenance and the usage file keep it."""
    model = usage.model or model
    cost, source = usage.cost_usd, "agent"
    if cost is None:
        price = price_of(plan, model)
        source = "prices" if price is not None else "unknown"
        if price is not None:
            uncached = max(0, usage.input_tokens - usage.cached_input_tokens)
            cost = (uncached * price.input + usage.cached_input_tokens * price.cached_input
                    + usage.output_tokens * price.output) / 1_000_000
    return {
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "total_tokens": usage.total_tokens,
        "cost_usd": None if cost is None else round(cost, 6),
        "cost_source": source,
        "model": model,
    }


def usage_rel(ctx: RunContext, worker_id: str, attempt: int) -> str:
    return f"{ctx.layout.logs_rel}/{worker_id}.attempt-{attempt}.usage.json"


def write_attempt(ctx: RunContext, worker_id: str, attempt: int, compute_tier: str,
                  record: dict[str, Any]) -> None:
    jsonio.write_json(ctx.layout.abs(usage_rel(ctx, worker_id, attempt)),
                      {"worker_id": worker_id, "attempt": attempt, "compute_tier": compute_tier, **record})


class Totals:
    """Sums of usage records. A plain class: creating a dataclass at import costs every run ~0.2 ms."""

    def __init__(self) -> None:
        self.input_tokens = 0
        self.cached_input_tokens = 0
        self.output_tokens = 0
        self.reasoning_tokens = 0
        self.cost_usd = 0.0
        self.attempts = 0  # attempts with a usage record
        self.unpriced = 0  # of them, attempts whose cost is unknown (tokens only)

    def add(self, record: dict[str, Any]) -> None:
        for key in TOKEN_KEYS:
            value = record.get(key)
            if isinstance(value, int):
                setattr(self, key, getattr(self, key) + value)
        cost = record.get("cost_usd")
        if isinstance(cost, (int, float)):
            self.cost_usd += float(cost)
        else:
            self.unpriced += 1
        self.attempts += 1

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_json(self) -> dict[str, Any]:
        return {**{key: getattr(self, key) for key in TOKEN_KEYS}, "total_tokens": self.total_tokens,
                "cost_usd": round(self.cost_usd, 6), "attempts": self.attempts, "unpriced_attempts": self.unpriced}

    def line(self) -> str:
        """`1234 tokens (input 1000, cached 200, output 234), $0.0123` with what is unknown said."""
        text = (f"{self.total_tokens} tokens (input {self.input_tokens}, cached {self.cached_input_tokens}, "
                f"output {self.output_tokens}), ${self.cost_usd:.4f}")
        if self.unpriced:
            text += f" + {self.unpriced} attempt{'s' if self.unpriced != 1 else ''} of unknown price"
        return text


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS


def record_problem(record: Any) -> str | None:
    """Why a usage record (a usage file, provenance's copy) is not believable, or None: token counts are
    integers from 0 to MAX_TOKENS, cached input never above input, reasoning never above output, the cost a
    finite number from 0 to MAX_COST_USD (or absent)."""
    if not isinstance(record, dict):
        return "not a mapping"
    for key in TOKEN_KEYS:
        if key in record and not _count(record[key]):
            return f"{key} is not a whole number from 0 to {MAX_TOKENS:,}"
    if record.get("cached_input_tokens", 0) > record.get("input_tokens", 0):
        return "cached_input_tokens is above input_tokens"
    if record.get("reasoning_tokens", 0) > record.get("output_tokens", 0):
        return "reasoning_tokens is above output_tokens"
    cost = record.get("cost_usd")
    if cost is not None and not (isinstance(cost, (int, float)) and not isinstance(cost, bool)
                                 and math.isfinite(cost) and 0 <= cost <= MAX_COST_USD):
        return f"cost_usd is not a number from 0 to {MAX_COST_USD:g}"
    return None


def attempts(ctx: RunContext) -> dict[tuple[str, int], dict[str, Any]]:
    """Every attempt's usage record by (worker id, attempt), from committed records only (the attempt records,
    then provenance for runs from before them), so this machine, a fresh clone and an archive count the same."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for worker_id, tried in history.every_task(ctx.layout):
        for attempt in tried:
            usage = attempt.get("usage")
            if isinstance(usage, dict) and record_problem(usage) is None:  # an edited record never reaches the bill
                key = (worker_id, int(attempt.get("attempt") or 0))
                found[key] = {"compute_tier": attempt.get("compute_tier"), **usage}
    for worker_id, entry in ctx.store.items():
        for attempt in entry.get("attempts") or []:
            if (isinstance(attempt, dict) and isinstance(attempt.get("usage"), dict)
                    and record_problem(attempt["usage"]) is None):
                key = (worker_id, int(attempt.get("attempt") or 0))
                found.setdefault(key, {"compute_tier": attempt.get("compute_tier"), **attempt["usage"]})
    return found


def spent(ctx: RunContext) -> Totals:
    totals = Totals()
    for record in attempts(ctx).values():
        totals.add(record)
    return totals


def summary(ctx: RunContext) -> dict[str, Any]:
    """Run total, per task and per tier, for status --json, reduce_state.json and final.json."""
    total = Totals()
    by_task: dict[str, Totals] = {}
    by_tier: dict[str, Totals] = {}
    for (worker_id, _), record in sorted(attempts(ctx).items()):
        total.add(record)
        by_task.setdefault(worker_id, Totals()).add(record)
        by_tier.setdefault(str(record.get("compute_tier") or "unknown"), Totals()).add(record)
    top = sorted(by_task.items(), key=lambda kv: (-kv[1].cost_usd, -kv[1].total_tokens, kv[0]))[:TOP_TASKS]
    return {
        "total": total.as_json(),
        "tasks": {worker_id: t.as_json() for worker_id, t in sorted(by_task.items())},
        "by_tier": {tier: t.as_json() for tier, t in sorted(by_tier.items())},
        "top_tasks": [{"worker_id": worker_id, **t.as_json()} for worker_id, t in top],
    }
