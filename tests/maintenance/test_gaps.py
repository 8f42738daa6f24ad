"""first_gap, the placement of a maintenance lease among users' bookings: never overlapping one, never earlier than
asked, and the earliest such window (a booking's end or the asked start)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hammersmith.maintenance.workflow import first_gap

T0 = datetime(2026, 12, 1, tzinfo=UTC)
minutes = st.integers(min_value=0, max_value=2000).map(lambda m: T0 + timedelta(minutes=m))
booking = st.tuples(minutes, st.integers(min_value=1, max_value=600)).map(
    lambda b: (b[0], b[0] + timedelta(minutes=b[1]))
)
bookings = st.lists(booking, max_size=12)


def overlaps(window: tuple[datetime, datetime], bookings: list[tuple[datetime, datetime]]) -> bool:
    start, end = window
    return any(b_start < end and start < b_end for b_start, b_end in bookings)


@given(bookings, minutes, st.integers(min_value=1, max_value=600))
def test_first_gap_of_a_length_never_overlaps_and_is_earliest(
    found: list[tuple[datetime, datetime]], earliest: datetime, length_minutes: int
) -> None:
    length = timedelta(minutes=length_minutes)
    window = first_gap(found, earliest, length)
    assert window is not None
    start, end = window
    assert start >= earliest and end - start == length
    assert not overlaps(window, found)
    candidates = [earliest] + [b_end for _, b_end in found if b_end >= earliest]
    assert start == min(c for c in candidates if not overlaps((c, c + length), found))


@given(bookings, minutes, minutes)
def test_first_gap_until_never_overlaps_and_refuses_only_when_nothing_fits(
    found: list[tuple[datetime, datetime]], earliest: datetime, until: datetime
) -> None:
    window = first_gap(found, earliest, until=until)
    candidates = [c for c in [earliest] + [b_end for _, b_end in found if b_end >= earliest] if c < until]
    fitting = [c for c in candidates if not overlaps((c, until), found)]
    if window is None:
        assert not fitting
        return
    start, end = window
    assert end == until and earliest <= start < until
    assert not overlaps(window, found)
    assert start == min(fitting)


def test_first_gap_after_a_running_lease_and_before_a_later_one() -> None:
    running = (T0 - timedelta(hours=1), T0 + timedelta(minutes=2))
    later = (T0 + timedelta(hours=3), T0 + timedelta(hours=5))
    assert first_gap([later, running], T0, timedelta(hours=1)) == (running[1], running[1] + timedelta(hours=1))
    assert first_gap([later, running], T0, timedelta(hours=4)) == (later[1], later[1] + timedelta(hours=4))
    assert first_gap([later, running], T0, until=T0 + timedelta(hours=4)) is None
    assert first_gap([running], T0, until=T0 + timedelta(hours=1)) == (running[1], T0 + timedelta(hours=1))


def test_first_gap_wants_a_length_or_an_end() -> None:
    with pytest.raises(ValueError):
        first_gap([], T0)
    with pytest.raises(ValueError):
        first_gap([], T0, timedelta(hours=1), until=T0 + timedelta(hours=2))
