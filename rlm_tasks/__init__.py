"""rlm: a declarative MapReduce(+Verify) runner for coding-agent workers, built on doit.

load (config) → render → run (agents, worker, execute) → state (provenance, status) → doit (tasks, console)
"""

__version__ = "0.1.0"
