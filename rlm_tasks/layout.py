"""Where a run's files live under .rlm/ (one place, so every module agrees).

Two kinds of files, in two places:

- committed, under `.rlm/runs/<run_id>/`: the run's record, the same on every machine
  (plan, contract, prompts, reports, attempt records, provenance, reduce_state, deferred, final, archived_to);
- machine-local, under `.rlm/local/` (one line in .gitignore): doit's database, caches, locks,
  logs, progress files, inflight records, detach state, the drift baseline and reduce_state.json's
  machine-local half (reduce_state.local.json): anything with pids, hosts, clocks or ages, which would
  dirty a fresh clone's tree on every `doit`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import NamedTuple

STATE_DIR = ".rlm"
LOCAL_DIR = f"{STATE_DIR}/local"
RUNS_DIR = f"{STATE_DIR}/runs"
ARCHIVE_DIR = f"{STATE_DIR}/archive"
LOCKS_DIR = f"{LOCAL_DIR}/locks"
CACHE_DIR = f"{LOCAL_DIR}/cache"
CLEANUP_LOG = f"{LOCAL_DIR}/cleanup.log"
BREAKS_LOG = f"{LOCKS_DIR}/breaks.log"
CLEANUP_LOCK = f"{LOCKS_DIR}/cleanup.lock"
CRASH_LOG = f"{LOCAL_DIR}/rlm-crash.log"
DOIT_DB = f"{LOCAL_DIR}/doit.sqlite3"
# What `rlm init` puts in .gitignore: everything machine-local is under this one directory.
GITIGNORE_LINE = f"/{LOCAL_DIR}/"
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# <run_id>-<UTC timestamp>: an archive's directory
ARCHIVE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*-\d{8}T\d{6}Z$")


def new_run_id(slug: str, moment: float | None = None) -> str:
    """A run id in the workflow's shape, `run_<UTC timestamp>_<slug>` (e.g. run_20260103T120000Z_example)."""
    when = time.gmtime(time.time() if moment is None else moment)
    clean = re.sub(r"[^a-z0-9]+", "-", slug.lower()).strip("-")[:32].strip("-") or "run"
    return f"run_{time.strftime('%Y%m%dT%H%M%SZ', when)}_{clean}"


def reports_rel(run_id: str) -> str:
    """Where a run's reports go unless a task sets `report_path` (config/defaults.report_path)."""
    return f"{RUNS_DIR}/{run_id}/artifacts/reports"


# ---- repository-wide places (not one run's) --------------------------------------------------------------

def archive_root(root: Path) -> Path:
    return root / ARCHIVE_DIR


def cleanup_lock_file(root: Path) -> Path:
    return root / CLEANUP_LOCK


def cleanup_log(root: Path) -> Path:
    return root / CLEANUP_LOG


def breaks_log(root: Path) -> Path:
    return root / BREAKS_LOG


class RunLayout(NamedTuple):
    """Paths of one run. Attributes ending in `_rel` are repo-relative POSIX strings."""

    root: Path
    run_id: str

    # ---- committed: the run's record --------------------------------------------------------------------

    @property
    def run_dir_rel(self) -> str:
        return f"{RUNS_DIR}/{self.run_id}"

    @property
    def artifacts_rel(self) -> str:
        return f"{self.run_dir_rel}/artifacts"

    @property
    def reports_rel(self) -> str:
        return reports_rel(self.run_id)

    @property
    def contract_rel(self) -> str:
        return f"{self.artifacts_rel}/context/run_contract.md"

    def prompt_rel(self, worker_id: str) -> str:
        return f"{self.artifacts_rel}/prompts/{worker_id}.md"

    def history_rel(self, worker_id: str, attempt: int) -> str:
        """Where a report replaced by a rerun (or moved by `doit clean`) is kept; attempt 0: not recorded."""
        return f"{self.artifacts_rel}/history/{worker_id}/{attempt or 'unrecorded'}.md"

    def attempts_rel(self, worker_id: str) -> str:
        """Committed: every attempt of one task (state.history), the budget's durable count."""
        return f"{self.artifacts_rel}/attempts/{worker_id}.json"

    def patch_rel(self, worker_id: str, attempt: int) -> str:
        """Committed: the change an isolated attempt made (run/isolation), merged or not."""
        return f"{self.artifacts_rel}/patches/{worker_id}.attempt-{attempt}.patch"

    @property
    def deferred_rel(self) -> str:
        return f"{self.run_dir_rel}/deferred.json"

    @property
    def reduce_state_rel(self) -> str:
        """The inventory, as the same on every machine (its machine-local half: reduce_state_local_rel)."""
        return f"{self.run_dir_rel}/reduce_state.json"

    # ---- machine-local: ignored by git ------------------------------------------------------------------

    @property
    def local_run_rel(self) -> str:
        return f"{LOCAL_DIR}/runs/{self.run_id}"

    @property
    def logs_rel(self) -> str:
        return f"{self.local_run_rel}/logs"

    def log_rel(self, worker_id: str, attempt: int) -> str:
        return f"{self.logs_rel}/{worker_id}.attempt-{attempt}.log"

    def worktree_rel(self, worker_id: str, attempt: int) -> str:
        """The git worktree an isolated attempt runs in."""
        return f"{LOCAL_DIR}/worktrees/{self.run_id}/{worker_id}.attempt-{attempt}"

    def gate_logs_rel(self, worker_id: str, attempt: int) -> str:
        """Output of an isolated attempt's setup and gate commands, one file per command."""
        return f"{self.local_run_rel}/gates/{worker_id}.attempt-{attempt}"

    @property
    def progress_dir_rel(self) -> str:
        return f"{self.local_run_rel}/progress"

    def progress_rel(self, worker_id: str) -> str:
        return f"{self.progress_dir_rel}/{worker_id}.md"

    @property
    def inflight_rel(self) -> str:
        return f"{self.local_run_rel}/inflight.json"

    @property
    def reduce_state_local_rel(self) -> str:
        # reduce_state.json's machine-local half: ages, running workers, drift since the run's start
        return f"{self.local_run_rel}/reduce_state.local.json"

    @property
    def drift_baseline_rel(self) -> str:
        return f"{self.local_run_rel}/drift_baseline.json"

    @property
    def detached_state_rel(self) -> str:
        return f"{self.local_run_rel}/detached.json"

    @property
    def detached_log_rel(self) -> str:
        return f"{self.local_run_rel}/detached.log"

    # ---- absolute paths ---------------------------------------------------------------------------------

    def abs(self, rel: str) -> Path:
        return self.root / rel

    @property
    def run_dir(self) -> Path:
        return self.abs(self.run_dir_rel)

    @property
    def local_run_dir(self) -> Path:
        return self.abs(self.local_run_rel)

    @property
    def plan_json(self) -> Path:
        return self.run_dir / "plan.json"

    @property
    def provenance_json(self) -> Path:
        return self.run_dir / "provenance.json"

    @property
    def provenance_journal(self) -> Path:
        return self.run_dir / "provenance.journal.jsonl"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def local_dir(self) -> Path:
        return self.root / LOCAL_DIR

    @property
    def lock_file(self) -> Path:
        return self.root / LOCKS_DIR / f"{self.run_id}.lock"

    @property
    def lock_holder_json(self) -> Path:
        return self.root / LOCKS_DIR / f"{self.run_id}.holder.json"

    @property
    def doit_db(self) -> Path:
        # doit's database is only a cache of provenance, so one file per repo is enough.
        return self.root / DOIT_DB
