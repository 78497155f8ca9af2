"""UTC timestamps as every JSON file writes them: `2026-11-21T17:00:00Z`."""

from __future__ import annotations

import datetime as dt
import time


def iso(moment: float | dt.datetime | None = None) -> str:
    """A Unix time, an aware datetime, or now, as a UTC ISO-8601 string to the second."""
    if moment is None:
        moment = time.time()
    when = moment if isinstance(moment, dt.datetime) else dt.datetime.fromtimestamp(moment, dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
