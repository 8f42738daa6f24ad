"""Times as operators type them: an ISO 8601 moment, or a duration from now like `30m`, `2h`, `1d`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
RELATIVE = re.compile(r"\+?(\d+)([smhdw])")


def parse_time(text: str, now: datetime) -> datetime:
    """A timezone-aware moment; a naive ISO time is taken as UTC (the store and every API speak UTC)."""
    value = text.strip()
    relative = RELATIVE.fullmatch(value)
    if relative:
        amount, unit = relative.groups()
        return now + timedelta(**{UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2026-12-01T18:00, 2026-12-01T18:00+01:00) "
            "or a duration from now like 30m, 2h, 1d, 1w"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
