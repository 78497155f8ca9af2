"""Budget: iterations and worker attempts used, and the guard that stops workers past the budget."""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from rlm_tasks.errors import UserError
from rlm_tasks.state import history, planfile, usage
from rlm_tasks.state.context import RunContext


class BudgetExhausted(UserError):
    """A budget in rlm.yaml is used up; no new worker starts."""


def attempts_by_task(ctx: RunContext, logs: bool = False) -> dict[str, int]:
    """Highest attempt number per worker id, from committed records: attempt histories and provenance.

    Attempt numbers never repeat within a run directory, so the highest one is how many started; the same
    on the run's machine, a fresh clone and an archive. `logs`: also this machine's logs (numbering only).
    """
    found = history.highest_attempts(ctx.layout, logs)
    for worker_id, entry in ctx.store.items():
        recorded = entry.get("attempt") if isinstance(entry, dict) else None
        if isinstance(recorded, int) and recorded > found.get(worker_id, 0):
            found[worker_id] = recorded
    return found


class BudgetUse(NamedTuple):
    iterations: int
    workers: int  # tasks started at least once
    attempts: int  # worker processes started, retries included
    tokens: int = 0  # input + output tokens of every attempt that reported usage
    cost_usd: float = 0.0  # of the attempts with a known cost
    planned: int = 0  # the iteration the plan would run as now (one more than `iterations` after DECIDE said iterate)

    def exhausted(self, ctx: RunContext) -> str | None:
        """Which budget is used up (no further iteration or worker fits), or None."""
        budget = ctx.plan.budget
        if budget.max_iterations is not None and self.iterations >= budget.max_iterations:
            return f"max_iterations ({self.iterations} of {budget.max_iterations} iterations used)"
        return self._workers_used_up(ctx) or self._spending_used_up(ctx)

    def refusal(self, ctx: RunContext) -> str | None:
        """Why no new worker may start, or None: the plan is past max_iterations or no attempt is left."""
        budget = ctx.plan.budget
        if budget.max_iterations is not None and self.planned > budget.max_iterations:
            return f"max_iterations ({self.planned - 1} of {budget.max_iterations} iterations used)"
        return self._workers_used_up(ctx) or self._spending_used_up(ctx)

    def _workers_used_up(self, ctx: RunContext) -> str | None:
        limit = ctx.plan.budget.max_workers
        if limit is not None and self.attempts >= limit:
            return f"max_workers ({self.attempts} worker attempts started, limit {limit})"
        return None

    def _spending_used_up(self, ctx: RunContext) -> str | None:
        budget = ctx.plan.budget
        if budget.max_tokens is not None and self.tokens >= budget.max_tokens:
            return f"max_tokens ({self.tokens} tokens used, limit {budget.max_tokens})"
        if budget.max_cost_usd is not None and self.cost_usd >= budget.max_cost_usd:
            return f"max_cost_usd (${self.cost_usd:.4f} spent, limit ${budget.max_cost_usd:g})"
        return None


def budget_use(ctx: RunContext) -> BudgetUse:
    """What the run has used, from durable records only: plan.json, attempt histories, provenance."""
    attempts = attempts_by_task(ctx)
    spent = usage.spent(ctx)
    return BudgetUse(planfile.recorded_iteration(ctx), len(attempts), sum(attempts.values()), spent.total_tokens,
                     spent.cost_usd, planfile.current_iteration(ctx))


class Claims:
    """One run's claims on the budget: what the records said at its first claim, and the attempts it started
    and the usage they reported since. Each run has its own (run.runstate.Run), so a run starts from the files."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: BudgetUse | None = None  # budget_use at the first claim
        self._started = 0  # attempts claimed since
        self._tokens = 0  # tokens and cost of attempts ended since
        self._cost = 0.0

    def add_usage(self, record: dict[str, Any]) -> None:
        """An attempt ended having used this (state/usage.attempt_record): later claims see it."""
        with self._lock:
            self._tokens += int(record.get("total_tokens") or 0)
            self._cost += float(record.get("cost_usd") or 0)

    def claim(self, ctx: RunContext, what: str) -> None:
        """Count one worker attempt against the budget, or raise BudgetExhausted naming the budget."""
        with self._lock:
            if self._base is None:
                # the files hold what ended before the first claim (an adopted attempt's usage): count it once
                self._tokens, self._cost = 0, 0.0
                self._base = budget_use(ctx)
            base = self._base
            use = BudgetUse(base.iterations, base.workers, base.attempts + self._started, base.tokens + self._tokens,
                            base.cost_usd + self._cost, base.planned)
            why = use.refusal(ctx)
            if why is not None:
                raise BudgetExhausted(
                    f"budget exhausted: {why}; {what} not started (raise the budget in rlm.yaml to go on)"
                )
            self._started += 1
