"""What loading rlm.yaml produces: the frozen Plan and its parts, or a ConfigError listing every problem."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from rlm_tasks.config import defaults
from rlm_tasks.config.isolation import Isolation, Setup
from rlm_tasks.errors import UserError
from rlm_tasks.layout import RUNS_DIR


class ConfigError(UserError):
    """rlm.yaml is invalid; `problems` holds one formatted line per mistake."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class AgentSpec(NamedTuple):
    kind: str = defaults.AGENT_KIND
    binary: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    sandbox: str = defaults.SANDBOX
    timeout: float | None = None
    command: tuple[str, ...] = ()
    report: str = defaults.AGENT_REPORT
    env_inherit: str | tuple[str, ...] = defaults.ENV_INHERIT  # "all", or the names a worker inherits
    mask_env: tuple[str, ...] = ()  # more name patterns whose values logs mask


class Tier(NamedTuple):
    name: str
    model: str
    effort: str | None


class TaskSpec(NamedTuple):
    id: str
    goal: str
    mode: str
    granularity: str
    compute_tier: str
    depends_on: tuple[str, ...]
    inputs: tuple[str, ...]
    context_paths: tuple[str, ...]
    watch: tuple[str, ...]
    report_path: str
    required_sections: tuple[str, ...]
    agent: AgentSpec
    retries: int = defaults.RETRIES
    escalate: bool = defaults.ESCALATE
    backoff_seconds: float = defaults.BACKOFF_SECONDS
    stall_after: float | None = None
    owns: tuple[str, ...] = ()
    fanout: str | None = None  # the `foreach` task this one was generated from
    item: str | None = None  # its item, as a short label
    accept_partial: bool = defaults.ACCEPT_PARTIAL
    progress_every: float | None = None  # seconds between the progress lines the prompt asks for
    join: bool = defaults.JOIN  # `join: true`, or an id starting with `join-`: `rlm run --wave` needs --allow-join
    isolation: Isolation | None = None  # `isolation: worktree` (config/isolation.py); None: the main tree

    @property
    def worker_id(self) -> str:
        return self.id

    @property
    def doit_name(self) -> str:
        return f"{self.mode}:{self.id}"


class Verification(NamedTuple):
    interpreter: str | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    commands: tuple[str, ...] = ()


class Contract(NamedTuple):
    scope_include: tuple[str, ...] = ()
    scope_avoid: tuple[str, ...] = ()
    invariants: tuple[str, ...] = ()
    sequence: tuple[str, ...] = ()
    verification: Verification = Verification()
    failure_policy: str | None = None


class Budget(NamedTuple):
    max_iterations: int | None = None
    max_workers: int | None = None
    max_inflight: int = defaults.MAX_INFLIGHT
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    stop_after_same_failures: int = defaults.STOP_AFTER_SAME_FAILURES


class Price(NamedTuple):
    """US dollars per million tokens."""

    input: float
    cached_input: float
    output: float


class Conclusion(NamedTuple):
    text: str
    evidence: tuple[str, ...] = ()


class Deviation(NamedTuple):
    """A departure of the orchestrator from the workflow (`decision.deviations`), and its repair."""

    what: str
    why: str
    repair: str


class Decision(NamedTuple):
    should_finish: bool | None = None
    reason: str | None = None
    conclusions: tuple[Conclusion, ...] = ()
    deviations: tuple[Deviation, ...] = ()


class Lifecycle(NamedTuple):
    ttl_days: float = defaults.TTL_DAYS
    keep_forever: bool = defaults.KEEP_FOREVER
    lock_stale_hours: float = defaults.LOCK_STALE_HOURS
    transient: str = defaults.TRANSIENT


class Executor(NamedTuple):
    """Where attempts run (never part of a digest): `local` threads, or a Dask `scheduler`."""

    kind: str = defaults.EXECUTOR_KIND
    scheduler: str | None = None
    filesystem: str = defaults.EXECUTOR_FILESYSTEM  # shared | none (isolated attempts travel as git bundles)



class Plan(NamedTuple):
    root: Path
    config_path: Path
    run_id: str
    goal: str
    success_criteria: tuple[str, ...]
    non_goals: tuple[str, ...]
    hint_paths: tuple[str, ...]
    templates_dir: str | None
    budget: Budget
    contract: Contract
    tiers: tuple[Tier, ...]
    tasks: tuple[TaskSpec, ...]  # map tasks first, then verify tasks, each in file order
    verify_k: int = defaults.VERIFY_K
    stale_seconds: float = defaults.STALE_SECONDS
    decision: Decision = Decision()
    uses: tuple[str, ...] = ()
    lifecycle: Lifecycle = Lifecycle()
    warnings: tuple[str, ...] = ()  # `rlm validate` prints them; never cached
    executor: Executor = Executor()
    fanouts: tuple[tuple[str, tuple[str, ...]], ...] = ()  # foreach name → generated ids
    sources: str = ""  # digest of what foreach expansion read (globbed names, items files)
    prices: tuple[tuple[str, Price], ...] = ()  # by model: the defaults with rlm.yaml's `prices:` over them
    setup: Setup = Setup()  # what each new worktree of an isolated attempt gets

    @property
    def run_dir(self) -> str:
        return f"{RUNS_DIR}/{self.run_id}"

    def task(self, task_id: str) -> TaskSpec:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)

    def tier(self, name: str) -> Tier:
        return next(t for t in self.tiers if t.name == name)

