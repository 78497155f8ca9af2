"""rlm: a declarative MapReduce(+Verify) runner for coding-agent workers, built on doit.

A run, by stage (ARCHITECTURE.md has the rooms and their import rules):
config (rlm.yaml → frozen Plan) → render (contract, prompts, agent argv) → state (provenance,
freshness, caches) → tasks.py (doit tasks) → run (session, attempts, workers) → phases (reduce,
deferred, final) → lifecycle (lock, archive, cleanup); cli/ is the `rlm` command.
"""

__version__ = "0.1.0"
