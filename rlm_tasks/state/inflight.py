"""inflight.json as everyone reads it: which attempts run now, and whether their orchestrator still lives.

The run session writes it (run/inflight.py) whenever an attempt starts or ends;
`rlm status`, `rlm wait`, reduce and a detached run's launcher read it here.
"""

from __future__ import annotations

from typing import Any

from rlm_tasks import jsonio
from rlm_tasks.layout import RunLayout
from rlm_tasks.procs import group_alive, hostname, pid_alive, start_ticks


def read(layout: RunLayout) -> dict[str, Any]:
    try:
        data = jsonio.read_json(layout.abs(layout.inflight_rel), default={})
    except ValueError:  # a torn file cannot happen (atomic writes), but never let it stop a run
        return {}
    return data if isinstance(data, dict) else {}


def is_remote(entry: dict[str, Any]) -> bool:
    """An attempt a Dask worker runs (run/executors/dask.py): ended through its cancel Event, not a signal."""
    return entry.get("executor") == "dask"


def entry_alive(entry: dict[str, Any]) -> bool:
    """The recorded worker's process group still exists (and its leader is not a newer process)."""
    if is_remote(entry) and entry.get("host") != hostname():
        return True  # another machine's process: only its Dask worker can tell
    pgid = entry.get("pgid")
    if not isinstance(pgid, int) or pgid <= 1 or not group_alive(pgid):
        return False
    recorded = entry.get("pid_start_ticks")
    now = start_ticks(pgid)
    # Linux reserves a pid while any process uses it as a group id, so a surviving group with a
    # dead leader is still ours; a live leader with another start time is someone else.
    return recorded is None or now is None or now == recorded


def orchestrator_alive(data: dict[str, Any]) -> bool:
    orch = data.get("orchestrator") or {}
    if orch.get("finished_at") or orch.get("host") not in (None, hostname()):
        return False
    return pid_alive(orch.get("pid"), orch.get("pid_start_ticks"))


def live_entries(data: dict[str, Any]) -> list[dict[str, Any]]:
    entries = data.get("entries") or []
    return [e for e in entries if isinstance(e, dict) and entry_alive(e)] if isinstance(entries, list) else []


def left_by_dead_orchestrator(layout: RunLayout) -> frozenset[str]:
    """Worker ids whose workers still run though the orchestrator that started them is gone."""
    data = read(layout)
    if not data.get("entries") or orchestrator_alive(data):
        return frozenset()
    return frozenset(str(entry.get("worker_id")) for entry in live_entries(data))
