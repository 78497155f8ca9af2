"""What every `doit` on a run does right after taking the run lock: keep `.rlm/` tidy and note where it started.

1. in-use markers on the archives listed under `uses:` (and off those no longer listed);
2. TTL cleanup, skipped with one line when another process is cleaning up;
3. the drift baseline, on the run's first start;
4. a warning when workers of a kind that reads skills will not find the map-worker skill.
None of this may stop a run: a failure is one line of output.
"""

from __future__ import annotations

from collections.abc import Callable

from rlm_tasks.install import skills
from rlm_tasks.layout import CLEANUP_LOG
from rlm_tasks.lifecycle import cleanup
from rlm_tasks.state import drift
from rlm_tasks.state.context import RunContext

USES_WAIT_SECONDS = 30.0  # markers must not be skipped: wait a little for a cleanup in progress


def on_run_start(ctx: RunContext, write: Callable[[str], None]) -> None:
    root = ctx.plan.root
    try:
        with cleanup.locked(root, USES_WAIT_SECONDS if ctx.plan.uses else 0.0) as got:
            if not got:
                write(f"rlm: {cleanup.SKIPPED_LINE}\n")
                if ctx.plan.uses:
                    write("rlm: uses: archives not marked in use this time (cleanup.lock busy)\n")
            else:
                for line in cleanup.sync_uses(root, ctx.plan.run_id, ctx.plan.uses):
                    write(f"rlm: {line}\n")
                done = cleanup.apply(root, cleanup.collect(root))
                deleted = [d.archive_id for d in done if d.action == "deleted"]
                if deleted:
                    write(f"rlm: cleanup: deleted {len(deleted)} expired archive(s): {', '.join(deleted)} "
                          f"(see {CLEANUP_LOG})\n")
        drift.take_baseline(ctx)
        agents = {(task.agent.kind, task.agent.env) for task in ctx.plan.tasks}
        warnings = {skills.missing_warning(kind, dict(env), root) for kind, env in agents}
        for warning in sorted(w for w in warnings if w):
            write(f"rlm: {warning}\n")
    except Exception as exc:  # housekeeping must never cost a run
        write(f"rlm: lifecycle housekeeping failed, run continues: {type(exc).__name__}: {exc}\n")
