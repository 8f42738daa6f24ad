"""What the public status page shows, read from the store and the config: one model for the HTML, JSON and Atom.

Only states, counts, times and the operators' own posts leave this module: never a node, an address, a project, a
person or a probe's message (those can hold hostnames and IPs). Every query is bounded by the site and a time range
over the indexed (site, started_at), and the history of a closed day is computed once and kept.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, and_, cast, func, not_, select, union_all
from sqlalchemy.orm import Session

from hammersmith.config import Site
from hammersmith.detect import probes, smoke
from hammersmith.errors import HammersmithError
from hammersmith.maintenance import windows as windows_mod
from hammersmith.store import Store
from hammersmith.store.models import DetectResult, Maintenance
from hammersmith.store.pauses import OPEN_STATES
from hammersmith.store.status_posts import StatusPostRow
from hammersmith.web.state import WebState
from hammersmith.web.status import health

log = logging.getLogger("hammersmith.status")

HISTORY_DAYS = 90
#: state changes replayed for the feed and for "since" (older ones are in the history bar)
CHANGES_DAYS = 7
#: schedule windows shown ahead
WINDOWS_DAYS = 14
WINDOWS_SHOWN = 5
#: posts in the feed at most
FEED_POSTS = 200
#: resolved posts listed under "recent"
RECENT_DAYS = 14
#: the computed page is reused this long: a crowd refreshing during an outage costs one computation
CACHE_SECONDS = 5.0
#: maintenance kinds users see as maintenance (a retirement is not coming back; a window is a schedule's)
MAINTENANCE_KINDS = ("maint", "adopted")


@dataclass(frozen=True)
class Change:
    """The site's state as the results judged it, from `at` on."""

    site: str
    state: str
    previous: str
    at: datetime


@dataclass
class SiteStatus:
    name: str
    state: str
    since: datetime | None
    posts: list[StatusPostRow]
    recent: list[StatusPostRow]
    maintenance: list[dict[str, Any]]
    windows: list[dict[str, Any]]
    history: list[tuple[date, str]]
    changes: list[Change] = field(default_factory=list)


@dataclass
class StatusPage:
    generated_at: datetime
    sites: list[SiteStatus]
    base_url: str
    feed_posts: list[StatusPostRow]

    @property
    def overall(self) -> str:
        """The banner: the worst judged state of any site (offline and unknown sites do not darken it)."""
        judged = [s.state for s in self.sites if s.state in health.SEVERITY]
        if judged:
            return health.worst(*judged)
        return "offline" if self.sites and all(s.state == "offline" for s in self.sites) else "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": _iso(self.generated_at),
            "overall": self.overall,
            "sites": [
                {
                    "site": s.name,
                    "state": s.state,
                    "label": health.LABELS[s.state],
                    "since": _iso(s.since),
                    "posts": [post_dict(p) for p in s.posts],
                    "recent_posts": [post_dict(p) for p in s.recent],
                    "maintenance": [{k: _iso(v) for k, v in m.items()} for m in s.maintenance],
                    "windows": [{k: _iso(v) for k, v in w.items()} for w in s.windows],
                    "history": [{"date": d.isoformat(), "state": state} for d, state in s.history],
                }
                for s in self.sites
            ],
        }


def post_dict(post: StatusPostRow) -> dict[str, Any]:
    """A post as the public sees it: what the operator wrote, never who."""
    return {
        "id": post.id,
        "title": post.title,
        "body": post.body,
        "impact": post.impact,
        "state": post.state,
        "published_at": _iso(post.created_at),
        "updated_at": _iso(post.updated_at),
        "resolved_at": _iso(post.resolved_at),
    }


def entry_id(base_url: str, key: str) -> str:
    """A permanent Atom id for a post or a change of this installation (urn:uuid, from its URL and the key)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{base_url}/status#{key}')}"


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (datetime, date)) else value


class Builder:
    """Builds the page for a web state; keeps the history of closed days, and the last page for CACHE_SECONDS."""

    def __init__(self, web: WebState, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.web = web
        self.clock = clock
        self._lock = threading.Lock()
        self._page: tuple[float, StatusPage] | None = None
        #: (site, day) -> (failed checks, any passed) of days that can no longer change
        self._days: dict[tuple[str, date], tuple[frozenset[tuple[str, str]], bool]] = {}

    def page(self) -> StatusPage:
        with self._lock:
            now = self.clock()
            if self._page is not None and 0 <= now.timestamp() - self._page[0] < CACHE_SECONDS:
                return self._page[1]
            page = self.build(now)
            self._page = (now.timestamp(), page)
            return page

    def build(self, now: datetime) -> StatusPage:
        store, settings = self.web.store, self.web.settings
        sites, posts = [], []
        for name, site in sorted(settings.sites.items()):
            status, site_posts = self._site(store, name, site, now)
            sites.append(status)
            posts.extend(site_posts)
        posts.sort(key=lambda p: (p.created_at, p.id), reverse=True)
        return StatusPage(now, sites, settings.http.base_url, posts[:FEED_POSTS])

    def _site(self, store: Store, name: str, site: Site, now: datetime) -> tuple[SiteStatus, list[StatusPostRow]]:
        """The site's status, and its posts of the history's days (for the feed)."""
        start = datetime.combine(now.date() - timedelta(days=HISTORY_DAYS - 1), time(0), tzinfo=UTC)
        try:
            # whole-site windows up to a second from now: the one under way now is among them
            past_windows = windows_mod.site_windows(site, start, now + timedelta(seconds=1), whole_site=True)
            offline_now = any(w.start <= now < w.end for w in windows_mod.merge(past_windows))
            upcoming = self._upcoming(name, site, now)
        except HammersmithError as exc:  # an unreadable calendar: judged without it
            log.warning("site %s: schedule unknown on the status page: %s", name, exc)
            offline_now, past_windows, upcoming = False, [], []
        posts = store.status_posts(site=name, since=start, limit=1000)
        ongoing = [p for p in posts if p.ongoing]
        with store.session() as session:
            checks = _checks(session, name, site, now)
            days = self._history(session, name, start, now, past_windows)
            changes = _changes(session, name, now - timedelta(days=CHANGES_DAYS), past_windows)
            maintenance = _maintenance(session, name, now)
        state = health.judge(checks, (p.impact for p in ongoing), offline_now, now)
        last = changes[-1] if changes else None
        since = last.at if last is not None and last.state == state and state != "up" else None
        history = []
        for i in range(HISTORY_DAYS):
            day = start.date() + timedelta(days=i)
            begins = datetime.combine(day, time(0), tzinfo=UTC)
            ends = begins + timedelta(days=1)
            failed, passed = days.get(day, (frozenset(), False))
            impacts = [p.impact for p in posts if p.created_at < ends and (p.resolved_at or now) >= begins]
            offline = any(w.start < ends and w.end > begins for w in past_windows)
            history.append((day, health.day_state(failed, passed, impacts, offline)))
        recent_since = now - timedelta(days=RECENT_DAYS)
        recent = [p for p in posts if not p.ongoing and p.resolved_at is not None and p.resolved_at >= recent_since]
        return SiteStatus(name, state, since, ongoing, recent, maintenance, upcoming, history, changes), posts

    def _upcoming(self, name: str, site: Site, now: datetime) -> list[dict[str, Any]]:
        """The next windows of every schedule: times, and how many nodes when a schedule covers only some."""
        snapshot = self.web.latest.get(name)
        found = []
        for schedule in site.schedules:
            for w in windows_mod.windows(schedule, now, now + timedelta(days=WINDOWS_DAYS)):
                nodes = None
                if schedule.nodes and snapshot is not None:
                    nodes = len(windows_mod.covered(schedule, snapshot.nodes))
                found.append({"start": w.start, "end": w.end, "whole_site": not schedule.nodes, "nodes": nodes})
        return sorted(found, key=lambda w: (w["start"], not w["whole_site"]))[:WINDOWS_SHOWN]

    def _history(
        self, session: Session, site: str, start: datetime, now: datetime, offline: list[windows_mod.Window]
    ) -> dict[date, tuple[frozenset[tuple[str, str]], bool]]:
        """Per day: the checks that failed outside scheduled offline windows, and whether any check passed. Days
        before yesterday are final (a long scenario may still record a result started yesterday) and are kept."""
        final_before = now.date() - timedelta(days=1)
        for key in [k for k in self._days if k[0] == site and k[1] < start.date()]:
            del self._days[key]  # out of the bar now
        days = {d: v for (s, d), v in self._days.items() if s == site}
        first = start.date()
        while first < final_before and first in days:
            first += timedelta(days=1)
        begins = datetime.combine(first, time(0), tzinfo=UTC)
        day = _day(session).label("day")
        query = (
            select(day, DetectResult.source, DetectResult.name, DetectResult.status)
            .where(DetectResult.site == site, DetectResult.started_at >= begins, DetectResult.status != "skipped")
            .where(*_outside(offline, begins, now))
            .group_by(day, DetectResult.source, DetectResult.name, DetectResult.status)
        )
        found: dict[date, tuple[set[tuple[str, str]], list[bool]]] = {}
        for when, source, name, status in session.execute(query):
            key = when if isinstance(when, date) else date.fromisoformat(str(when))
            failed, passed = found.setdefault(key, (set(), [False]))
            if status == "failed":
                failed.add((source, name))
            else:
                passed[0] = True
        for key in list(days):
            if key >= first:
                del days[key]
        for key, (failed, passed) in found.items():
            days[key] = (frozenset(failed), passed[0])
        d = first
        while d < final_before:  # a closed day without results is final too
            days.setdefault(d, (frozenset(), False))
            self._days[(site, d)] = days[d]
            d += timedelta(days=1)
        return days


def _day(session: Session) -> Any:
    """The UTC calendar day of a result, in the database (PostgreSQL's date() would use the session's zone)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", DetectResult.started_at), Date)
    return func.date(DetectResult.started_at)


def _outside(offline: list[windows_mod.Window], begins: datetime, ends: datetime) -> list[ColumnElement[bool]]:
    """Leave out results inside scheduled offline windows: a part-time site is not down while it sleeps."""
    return [
        not_(and_(DetectResult.started_at >= w.start, DetectResult.started_at < w.end))
        for w in offline
        if w.end > begins and w.start < ends
    ]


@functools.cache
def _registry() -> tuple[tuple[str, str, str | None], ...]:
    """(source, name, smoke set) of every probe and scenario; plugins are found once, not on every page."""
    found: list[tuple[str, str, str | None]] = [("probe", name, None) for name in probes.load()]
    return (*found, *(("smoke", s.name, s.set) for s in smoke.load().values()))


def _checks(session: Session, site_name: str, site: Site, now: datetime) -> list[health.Check]:
    """The newest result of every known probe and scenario (one index seek each), with its freshness limit."""
    probe_age = timedelta(seconds=health.FRESH_INTERVALS * site.probes.interval_seconds)
    intervals = {"cheap": site.smoke.cheap_interval_seconds, "expensive": site.smoke.expensive_interval_seconds}
    known: list[tuple[str, str, timedelta, bool]] = []
    for source, name, smoke_set in _registry():
        seconds = intervals[smoke_set] if smoke_set else site.probes.interval_seconds
        age = timedelta(seconds=health.FRESH_INTERVALS * seconds) if seconds else probe_age
        known.append((source, name, age, smoke_set in (None, "cheap") and seconds > 0))
    newest = [
        select(DetectResult.source, DetectResult.name, DetectResult.status, DetectResult.started_at)
        .where(
            DetectResult.site == site_name,
            DetectResult.source == source,
            DetectResult.name == name,
            DetectResult.started_at >= now - max_age,
        )
        .order_by(DetectResult.started_at.desc())
        .limit(1)
        .subquery()
        for source, name, max_age, _ in known
    ]
    found = {(r.source, r.name): r for r in session.execute(union_all(*(select(n) for n in newest)))}
    return [
        health.Check(source, name, row.status, row.started_at, max_age, heartbeat)
        for source, name, max_age, heartbeat in known
        if (row := found.get((source, name))) is not None
    ]


def _changes(session: Session, site: str, since: datetime, offline: list[windows_mod.Window]) -> list[Change]:
    """Replay the results since `since`: each time one check's status changes, judge the site again; a change of
    the judged state is a Change. Only rows whose status differs from the check's previous one are read back."""
    previous = (
        func.lag(DetectResult.status)
        .over(
            partition_by=(DetectResult.source, DetectResult.name), order_by=(DetectResult.started_at, DetectResult.id)
        )
        .label("previous")
    )
    ordered = (
        select(DetectResult.source, DetectResult.name, DetectResult.status, DetectResult.started_at, previous)
        .where(DetectResult.site == site, DetectResult.started_at >= since)
        .where(*_outside(offline, since, datetime.max.replace(tzinfo=UTC)))
        .subquery()
    )
    query = (
        select(ordered.c.source, ordered.c.name, ordered.c.status, ordered.c.started_at)
        .where((ordered.c.previous.is_(None)) | (ordered.c.previous != ordered.c.status))
        .order_by(ordered.c.started_at)
    )
    failing: set[tuple[str, str]] = set()
    state, changes = None, []
    for source, name, status, at in session.execute(query):
        (failing.add if status == "failed" else failing.discard)((source, name))
        judged = health.from_failures(failing)
        if state is not None and judged != state:
            changes.append(Change(site, judged, state, at))
        state = judged
    return changes


def _maintenance(session: Session, site: str, now: datetime) -> list[dict[str, Any]]:
    """Counts and times of the site's open maintenances: under way, planned, and a schedule's window."""
    query = (
        select(
            Maintenance.kind,
            Maintenance.state,
            Maintenance.start_at,
            Maintenance.until,
        )
        .where(Maintenance.site == site, Maintenance.state.in_(OPEN_STATES))
        .limit(100_000)
    )
    groups: dict[str, dict[str, Any]] = {}
    for kind, state, start_at, until in session.execute(query):
        if kind == windows_mod.KIND:
            what = "scheduled"
        elif kind in MAINTENANCE_KINDS:
            what = "planned" if state == "requested" or (state == "waiting" and start_at > now) else "ongoing"
        else:
            continue
        group = groups.setdefault(what, {"what": what, "nodes": 0, "from": start_at, "until": until, "open_end": False})
        group["nodes"] += 1
        group["from"] = min(group["from"], start_at)
        group["open_end"] = group["open_end"] or until is None
        if until is not None and (group["until"] is None or until > group["until"]):
            group["until"] = until
    return [
        {"what": g["what"], "nodes": g["nodes"], "from": g["from"], "until": None if g["open_end"] else g["until"]}
        for what in ("ongoing", "planned", "scheduled")
        if (g := groups.get(what)) is not None
    ]
