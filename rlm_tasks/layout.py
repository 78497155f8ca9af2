"""Where a run's files live under .rlm/ (one place, so every module agrees)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_DIR = ".rlm"


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run. Attributes ending in `_rel` are repo-relative POSIX strings."""

    root: Path
    run_id: str

    @property
    def run_dir_rel(self) -> str:
        return f"{STATE_DIR}/runs/{self.run_id}"

    @property
    def artifacts_rel(self) -> str:
        return f"{self.run_dir_rel}/artifacts"

    @property
    def contract_rel(self) -> str:
        return f"{self.artifacts_rel}/context/run_contract.md"

    def prompt_rel(self, worker_id: str) -> str:
        return f"{self.artifacts_rel}/prompts/{worker_id}.md"

    def log_rel(self, worker_id: str, attempt: int) -> str:
        return f"{self.artifacts_rel}/logs/{worker_id}.attempt-{attempt}.log"

    def abs(self, rel: str) -> Path:
        return self.root / rel

    @property
    def run_dir(self) -> Path:
        return self.abs(self.run_dir_rel)

    @property
    def plan_json(self) -> Path:
        return self.run_dir / "plan.json"

    @property
    def provenance_json(self) -> Path:
        return self.run_dir / "provenance.json"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "locks" / f"{self.run_id}.lock"

    @property
    def lock_holder_json(self) -> Path:
        return self.state_dir / "locks" / f"{self.run_id}.holder.json"

    @property
    def doit_db(self) -> Path:
        # doit's database is only a cache of provenance, so one file per repo is enough.
        return self.state_dir / "doit.sqlite3"
