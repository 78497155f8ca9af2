"""UTC timestamps as every JSON file writes them (`2026-11-21T17:00:00Z`), and the one parser that reads them back."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: float | dt.datetime | None = None) -> str:
    """A Unix time, an aware datetime, or now, as a UTC ISO-8601 string to the second."""
    if moment is None:
        moment = time.time()
    when = moment if isinstance(moment, dt.datetime) else dt.datetime.fromtimestamp(moment, dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: Any) -> dt.datetime | None:
    """An aware datetime from an ISO-8601 string (naive ones are taken as UTC); None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
