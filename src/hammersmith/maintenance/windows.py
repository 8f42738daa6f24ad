"""Part-time sites: a schedule's offline windows, whether a site is offline by schedule, and the maintenances
that keep users off nodes across each window.

Expansion is pure (config in, UTC intervals out) so the CLI, the metrics and the reconciler agree on one answer.
The store's maintenance rows of kind "window" are the only memory: a cycle that finds its row does nothing again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from openstack import exceptions as sdk_exc

from hammersmith.config import WEEKDAYS, Schedule, Site
from hammersmith.errors import HammersmithError
from hammersmith.maintenance.silences import Alertmanager, site_matchers
from hammersmith.maintenance.workflow import Context, end, start
from hammersmith.store.maintenance import MaintenanceRow

log = logging.getLogger("hammersmith.windows")

#: how far `state` looks for the next change: a year covers any weekly span and most calendars
HORIZON = timedelta(days=366)
#: an iCalendar file is re-read after this long: a scrape or a CLI call must not fetch it every time
ICAL_TTL_SECONDS = 300.0
#: a calendar file is a few KB; anything near this is not one
MAX_ICAL_BYTES = 4 * 1_048_576
REASON = "offline as scheduled: {}"
BY = "schedule"
KIND = "window"


class CalendarError(HammersmithError):
    """A schedule's iCalendar file could not be read or parsed; the message names the source."""


@dataclass(frozen=True)
class Window:
    """One offline interval of one schedule, in UTC: [start, end)."""

    schedule: str
    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(frozen=True)
class SiteState:
    """Whether a whole site is offline by schedule now, until when, and when that next changes (None: not within
    a year)."""

    offline: bool
    until: datetime | None
    next_change: datetime | None
    schedules: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "offline": self.offline,
            "until": self.until.isoformat() if self.until else None,
            "next_change": self.next_change.isoformat() if self.next_change else None,
            "schedules": list(self.schedules),
        }


def merge(intervals: Iterable[Window]) -> list[Window]:
    """Overlapping or touching windows become one: an operator sees one absence, and one lease covers it."""
    merged: list[Window] = []
    for window in sorted(intervals, key=lambda w: (w.start, w.end)):
        if merged and window.start <= merged[-1].end:
            last = merged[-1]
            if window.end > last.end:
                merged[-1] = Window(last.schedule, last.start, window.end)
        else:
            merged.append(window)
    return merged


def windows(schedule: Schedule, start: datetime, end: datetime) -> list[Window]:
    """The schedule's windows that overlap [start, end), merged, in UTC (not clipped to the range)."""
    start, end = _utc(start), _utc(end)
    if schedule.ical is not None:
        found = _ical_windows(schedule, start, end)
    else:
        found = _weekly_windows(schedule, start, end)
    return [w for w in merge(found) if w.end > start and w.start < end]


def _weekly_windows(schedule: Schedule, start: datetime, end: datetime) -> list[Window]:
    """Local wall-clock spans turned into UTC per day, so a span keeps its local hours across DST changes."""
    zone = ZoneInfo(schedule.timezone)
    first = start.astimezone(zone).date() - timedelta(days=1)  # a span over midnight may have started yesterday
    last = end.astimezone(zone).date()
    found: list[Window] = []
    day = first
    while day <= last:
        weekday = WEEKDAYS[day.weekday()]
        for span in schedule.offline:
            if weekday not in span.days:
                continue
            begins, ends = _clock(span.start), _clock(span.end)
            found.append(
                Window(
                    schedule.name,
                    _local(day, begins, zone),
                    _local(day + timedelta(days=1) if ends <= begins else day, ends, zone),
                )
            )
        day += timedelta(days=1)
    return found


def _clock(text: str) -> clock:
    hours, minutes = text.split(":")
    return clock(int(hours), int(minutes))


def _local(day: date, at: clock, zone: ZoneInfo) -> datetime:
    """A wall-clock time in UTC; one a DST change skips is read with the offset before the change (an hour on)."""
    moment = datetime.combine(day, at, tzinfo=zone)
    return moment.astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_cache: dict[str, tuple[float, bytes]] = {}
_cache_lock = threading.Lock()


def _ical_bytes(source: str) -> bytes:
    """The calendar file, re-read at most every ICAL_TTL_SECONDS."""
    with _cache_lock:
        cached = _cache.get(source)
        if cached and time.monotonic() - cached[0] < ICAL_TTL_SECONDS:
            return cached[1]
    try:
        if source.startswith(("http://", "https://")):
            response = httpx.get(source, timeout=30, follow_redirects=True)
            response.raise_for_status()
            data = response.content
        else:
            with Path(source).open("rb") as handle:
                data = handle.read(MAX_ICAL_BYTES + 1)
    except (OSError, httpx.HTTPError) as exc:
        raise CalendarError(f"cannot read the calendar {source}: {exc}") from None
    if len(data) > MAX_ICAL_BYTES:
        raise CalendarError(f"the calendar {source} is larger than {MAX_ICAL_BYTES // 1_048_576} MiB")
    with _cache_lock:
        _cache[source] = (time.monotonic(), data)
    return data


def _ical_windows(schedule: Schedule, start: datetime, end: datetime) -> list[Window]:
    """Every event occurrence (RRULE, RDATE and EXDATE applied by recurring-ical-events) is an offline window."""
    import icalendar
    import recurring_ical_events

    assert schedule.ical is not None
    zone = ZoneInfo(schedule.timezone)
    try:
        calendar = icalendar.Calendar.from_ical(_ical_bytes(schedule.ical))
        events = recurring_ical_events.of(calendar).between(start, end)
    except CalendarError:
        raise
    except Exception as exc:  # the libraries raise ValueError and their own errors on a malformed file
        raise CalendarError(f"cannot parse the calendar {schedule.ical}: {type(exc).__name__}: {exc}") from None
    found: list[Window] = []
    for event in events:
        begins = _event_time(event.get("DTSTART").dt, zone)
        stop = event.get("DTEND")
        ends = _event_time(stop.dt, zone) if stop is not None else begins + _duration(event, begins)
        if ends > begins:
            found.append(Window(schedule.name, begins, ends))
    return found


def _duration(event: Any, begins: datetime) -> timedelta:
    """An event without DTEND lasts its DURATION, or (RFC 5545) a day if it is all-day, else no time."""
    duration = event.get("DURATION")
    if duration is not None:
        return timedelta(seconds=duration.dt.total_seconds())
    return timedelta(days=1) if not isinstance(event.get("DTSTART").dt, datetime) else timedelta(0)


def _event_time(value: date | datetime, zone: ZoneInfo) -> datetime:
    """All-day dates start at the schedule's local midnight; floating times are the schedule's local time."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, clock(0), tzinfo=zone)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def site_windows(site: Site, start: datetime, end: datetime, *, whole_site: bool = False) -> list[Window]:
    """Every schedule's windows overlapping [start, end), by start; `whole_site`: only schedules without `nodes`."""
    found: list[Window] = []
    for schedule in site.schedules:
        if not whole_site or not schedule.nodes:
            found.extend(windows(schedule, start, end))
    return sorted(found, key=lambda w: (w.start, w.schedule))


def state(site: Site, now: datetime) -> SiteState:
    """A site is offline by schedule while a schedule covering the whole site (no `nodes`) is in a window."""
    now = _utc(now)
    found = site_windows(site, now, now + HORIZON, whole_site=True)
    spans = merge(Window("", w.start, w.end) for w in found)
    for span in spans:
        if span.start <= now < span.end:
            names = tuple(sorted({w.schedule for w in found if w.start < span.end and w.end > span.start}))
            return SiteState(True, span.end, span.end, names)
    upcoming = [s for s in spans if s.start > now]
    return SiteState(False, None, upcoming[0].start if upcoming else None)


# --- reconcile: the schedule made real in Blazar, Ironic and Alertmanager ------------------------------------------


def covered(schedule: Schedule, nodes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes a schedule names (by name, UUID or resource class); every node when it names none."""
    if not schedule.nodes:
        return list(nodes)
    wanted = set(schedule.nodes)
    return [n for n in nodes if wanted & {n.get("uuid"), n.get("name"), n.get("resource_class")}]


def reconcile(ctx: Context) -> list[MaintenanceRow]:
    """Each cycle: end the window maintenances whose window is over (the `maint end` path), then start one for
    every node of every window that begins within its schedule's `lead_hours` (or is under way), and silence a
    whole-site window's alerts. Rows of kind "window" are the memory, so a later cycle repeats nothing; a refused
    or cancelled one is not tried again for that window."""
    if not ctx.site.schedules:
        return []
    changed = _end_past(ctx)
    try:
        nodes = ctx.nodes()
    except sdk_exc.SDKException as exc:
        log.error("site %s: cannot list nodes for the schedules: %s", ctx.site_name, exc)
        return changed
    done = {(r.node_uuid, r.until, r.reason) for r in ctx.store.maintenances(site=ctx.site_name, limit=10_000)}
    for schedule in ctx.site.schedules:
        try:
            # a second more than the lead, so a lead of 0 still sees the window that begins now
            upcoming = windows(schedule, ctx.now, ctx.now + timedelta(hours=schedule.lead_hours, seconds=1))
        except CalendarError as exc:
            log.error("site %s: schedule %s: %s", ctx.site_name, schedule.name, exc)
            continue
        targets = covered(schedule, nodes)
        for window in upcoming:
            for node in targets:
                if (node["uuid"], window.end, REASON.format(schedule.name)) not in done:
                    changed.extend(_start(ctx, schedule, window, node))
            if not schedule.nodes and ctx.alertmanager is not None:
                silence_site(ctx.site_name, ctx.alertmanager, window)
    return changed


def _start(ctx: Context, schedule: Schedule, window: Window, node: dict[str, Any]) -> list[MaintenanceRow]:
    """One node's window maintenance; a node already in another maintenance is left to it (logged, not stored)."""
    other = ctx.store.open_maintenance_of(ctx.site_name, node["uuid"])
    if other is not None:
        log.info(
            "site %s: %s skips node %s: maintenance #%s is open", ctx.site_name, schedule.name, node["name"], other.id
        )
        return []
    try:
        return start(
            ctx,
            [node],
            reason=REASON.format(schedule.name),
            by=BY,
            when=window.start,
            until=window.end,
            kind=KIND,
        )
    except (HammersmithError, sdk_exc.SDKException) as exc:  # stored on the cancelled row by the workflow
        log.warning("site %s: %s: node %s: %s", ctx.site_name, schedule.name, node["name"] or node["uuid"], exc)
        return []


def _end_past(ctx: Context) -> list[MaintenanceRow]:
    """A window that is over returns its nodes through the same steps as `hammersmith maint end`; a failed step
    stays on the row and the next cycle resumes it."""
    ended: list[MaintenanceRow] = []
    for row in ctx.store.maintenances(site=ctx.site_name, open_only=True, limit=10_000):
        if row.kind != KIND or row.until is None or row.until > ctx.now:
            continue
        try:
            ended.extend(end(ctx, [{"uuid": row.node_uuid, "name": row.node_name}], by=BY))
        except (HammersmithError, sdk_exc.SDKException) as exc:
            log.error("site %s: window maintenance #%s of %s did not end: %s", ctx.site_name, row.id, row.node, exc)
    return ended


def silence_comment(window: Window) -> str:
    """What identifies a window's site silence in Alertmanager, which is where it is remembered."""
    return f"{REASON.format(window.schedule)} {window.start:%Y-%m-%d %H:%M}-{window.end:%Y-%m-%d %H:%M} UTC"


def silence_site(site: str, alertmanager: Alertmanager, window: Window) -> None:
    """One silence of every alert of the site for the window, unless Alertmanager already holds it."""
    comment = silence_comment(window)
    try:
        response = httpx.get(
            f"{alertmanager.url}/api/v2/silences",
            params={"filter": f'site="{site}"'},
            timeout=alertmanager.timeout,
        )
        response.raise_for_status()
        if any(s["comment"] == comment and s["status"]["state"] != "expired" for s in response.json()):
            return
        alertmanager.silence(site_matchers(site), window.start, window.end, f"hammersmith {BY}", comment)
    except (httpx.HTTPError, HammersmithError) as exc:  # tried again next cycle
        log.error("site %s: no silence for %s: %s", site, comment, exc)
