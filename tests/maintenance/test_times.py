"""The operator's time syntax shared by pause and maint: ISO 8601 or a duration from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from hammersmith.maintenance.times import parse_time

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW + timedelta(minutes=30)),
        ("2h", NOW + timedelta(hours=2)),
        ("+1d", NOW + timedelta(days=1)),
        ("1w", NOW + timedelta(weeks=1)),
        ("90s", NOW + timedelta(seconds=90)),
        (" 2h ", NOW + timedelta(hours=2)),
        ("2026-12-02T08:00", datetime(2026, 12, 2, 8, 0, tzinfo=UTC)),
        ("2026-12-02T08:00:00Z", datetime(2026, 12, 2, 8, 0, tzinfo=UTC)),
        ("2026-12-02", datetime(2026, 12, 2, tzinfo=UTC)),
        ("2026-12-02T09:00+01:00", datetime(2026, 12, 2, 9, 0, tzinfo=timezone(timedelta(hours=1)))),
    ],
)
def test_iso_and_relative_times(text: str, expected: datetime) -> None:
    parsed = parse_time(text, NOW)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["", "soon", "2x", "h2", "-2h", "2026-13-01", "1.5h"])
def test_anything_else_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not a time: use ISO 8601 .* or a duration from now like 30m, 2h, 1d"):
        parse_time(text, NOW)
