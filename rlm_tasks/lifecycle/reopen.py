"""An archived run is finished: a run on it is refused unless it is reopened (`rlm run --reopen`).

`rlm archive` leaves `archived_to.json` in the run's directory. Running the run again would write
into a record that was declared done, so a run refuses in one line that says how to start the next
run (a new run_id) or continue this one. Reopening records `reopened_at` in archived_to.json (the
next `rlm archive` rewrites it without), so the run stays open for every later `doit`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rlm_tasks import jsonio
from rlm_tasks.clock import iso
from rlm_tasks.errors import UserError
from rlm_tasks.layout import new_run_id
from rlm_tasks.lifecycle.archive import archived_to_path
from rlm_tasks.state.context import RunContext

REOPEN_ENV = "RLM_REOPEN"
# what may still run on a finished run: DECIDE and ARCHIVE again write only the record archive checks
ALLOWED_ON_ARCHIVED = frozenset({"final", "archive"})


class RunArchived(UserError):
    """The run was archived (finished) and not reopened: nothing runs."""

    exit_code = 1


def reopen_requested() -> bool:
    return os.environ.get(REOPEN_ENV, "").strip().lower() in ("1", "true", "yes")


def finished_line(ctx: RunContext) -> str | None:
    """`rlm status`'s line for an archived run that was not reopened; None otherwise."""
    try:
        pointer = jsonio.read_json(archived_to_path(ctx))
    except ValueError:
        return None
    if not isinstance(pointer, dict) or pointer.get("reopened_at"):
        return None
    return (f"finished: archived to {pointer.get('archive_path', 'an archive')}; a new run_id starts the next run "
            "(`rlm run --reopen` continues this one)")


def refuse_or_reopen(ctx: RunContext, reopen: bool, selected: Sequence[str] | None) -> str | None:
    """Raise RunArchived for a run on an archived run; with `reopen`, reopen it and return a line saying so."""
    path = archived_to_path(ctx)
    try:
        pointer = jsonio.read_json(path)
    except ValueError:
        return None
    if not isinstance(pointer, dict) or pointer.get("reopened_at"):
        return None
    if selected and set(selected) <= ALLOWED_ON_ARCHIVED:
        return None
    where = pointer.get("archive_path", "an archive")
    if not reopen:
        config = ctx.plan.config_path.name
        raise RunArchived(f"run {ctx.plan.run_id} is finished (archived to {where}); start the next run with a new "
                          f"run_id in {config} (e.g. `run_id: {new_run_id(ctx.plan.root.name)}`), or continue "
                          "this one with `rlm run --reopen`")
    jsonio.write_json(path, {**pointer, "reopened_at": iso()})
    return f"rlm: run {ctx.plan.run_id} reopened (it was archived to {where}; that archive stays as it is)"
