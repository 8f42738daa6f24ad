"""Worth automating: for every known error (one per runbook), how often it happens, what a person's fix costs, what
the hammers already saved, and the xkcd 1205 five-year budget, answered from hammersmith's own records.

Every figure is aggregated by the database (GROUP BY, a handful of bounded queries per site): a year of ledger at
10,000 nodes is never loaded into Python. Medians come from value histograms (steps of 6 s, distinct minutes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Float, Select, case, cast, exists, func, select
from sqlalchemy.orm import Session, aliased

from hammersmith.config import Policy, Settings
from hammersmith.react import runbooks as runbooks_mod
from hammersmith.store.models import Action, Finding, Incident, Sweep

if TYPE_CHECKING:
    from hammersmith.store import Store

#: how far back occurrences, fixes and medians are counted (each source also stops where the store's memory does)
WINDOW_DAYS = 90.0
#: a rate is never taken over less than a week: a day's records say little about a year
MIN_DAYS = 7.0
YEARS = 5
DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
#: an incident whose hammer action was on a node with a finding of that hammer this close in time is that finding
SLACK = timedelta(hours=2)
#: a hammer's time to fix is measured in steps of 0.1 min, the precision it is shown with
STEP_SECONDS = 6


@dataclass(frozen=True)
class KnownError:
    """One runbook's known error, with its figures over the window; minutes are a person's minutes."""

    name: str
    title: str
    #: the agent's path of the runbook page
    runbook: str
    alerts: tuple[str, ...]
    hammers: tuple[str, ...]
    occurrences: int
    per_week: float
    per_month: float
    #: median of the hand fixes recorded on its incidents when there are any (hand_fixes > 0), else the runbook's
    manual_minutes: float
    #: median minutes from a hammer's action to its verified fix; None: no verified fix in the window
    hammer_minutes: float | None
    hand_fixes: int
    hammer_fixes: int
    saved_minutes: float
    budget_5y_minutes: float
    automated: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of `hammersmith toil --json` and the /toil page."""
        out = asdict(self)
        return {**out, "alerts": list(self.alerts), "hammers": list(self.hammers)}


def budget_5y(per_day: float, manual_minutes: float) -> float:
    """xkcd 1205: how long automating a task may take before it costs more than doing it by hand for five years."""
    return per_day * DAYS_PER_YEAR * YEARS * manual_minutes


def median(histogram: Mapping[float, int]) -> float | None:
    """The median of values given as value -> how many times (the mean of the middle two for an even count)."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    low_rank, high_rank = (total - 1) // 2, total // 2
    low = high = None
    seen = 0
    for value, count in sorted(histogram.items()):
        if low is None and seen + count > low_rank:
            low = value
        if seen + count > high_rank:
            high = value
            break
        seen += count
    assert low is not None and high is not None
    return (low + high) / 2


@dataclass
class _Tally:
    """What the store says, summed over sites: counts, rates per day, and histograms, keyed for the runbooks."""

    findings: Counter[str]
    finding_rate: Counter[str]
    #: (alertname, the hammer whose finding the incident duplicates, or None) -> incidents
    incidents: Counter[tuple[str, str | None]]
    incident_rate: Counter[tuple[str, str | None]]
    #: alertname -> {minutes a person recorded: incidents}
    hand: dict[str, Counter[float]]
    #: hammer -> {seconds from action to verified fix, in STEP_SECONDS (None: not timed): fixes}
    fixes: dict[str, Counter[float | None]]

    @classmethod
    def empty(cls) -> _Tally:
        return cls(Counter(), Counter(), Counter(), Counter(), {}, {})


def rank(
    store: Store,
    *,
    site: str | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
    days: float = WINDOW_DAYS,
) -> list[KnownError]:
    """Every known error, highest five-year budget first (then time already saved, then name).

    `site`: one site, else every site of `settings` (else every site in the store). `settings` gives each site's
    hammer modes (automated = a hammer of the runbook not off there) and retention; without it, the defaults.
    """
    now = now or datetime.now(UTC)
    if days <= 0:
        raise ValueError(f"days must be > 0, not {days!r}")
    catalogue = runbooks_mod.catalogue()
    tally = _Tally.empty()
    with store.session() as session:
        sites = [site] if site is not None else list(settings.sites) if settings is not None else _sites(session)
        for name in sites:
            _count_site(session, tally, name, now, days, _policy(settings, name))
    policies = [_policy(settings, name) for name in sites] or [_default_policy()]
    known = _registered()
    errors = [_known_error(runbook, tally, policies, known) for runbook in catalogue.values()]
    return sorted(errors, key=lambda e: (-e.budget_5y_minutes, -e.saved_minutes, e.name))


def automate_next(errors: Iterable[KnownError]) -> list[KnownError]:
    """The ranking's to-do list: not automated yet and worth something, biggest budget first."""
    return [e for e in errors if not e.automated and e.budget_5y_minutes > 0]


def _known_error(
    runbook: runbooks_mod.Runbook, tally: _Tally, policies: list[Policy], known: frozenset[str]
) -> KnownError:
    hammers, alerts = set(runbook.hammers), set(runbook.alerts)
    # an incident that is one of this runbook's findings (its hammer acted on that node then) counts once
    counted = [key for key in tally.incidents if key[0] in alerts and key[1] not in hammers]
    occurrences = sum(tally.findings[h] for h in hammers) + sum(tally.incidents[k] for k in counted)
    per_day = float(sum(tally.finding_rate[h] for h in hammers) + sum(tally.incident_rate[k] for k in counted))
    hand: Counter[float] = Counter()
    for alert in alerts:
        hand.update(tally.hand.get(alert, {}))
    fixes: Counter[float | None] = Counter()
    for hammer in hammers:
        fixes.update(tally.fixes.get(hammer, {}))
    hand_fixes, hammer_fixes = sum(hand.values()), sum(fixes.values())
    manual = median(hand) if hand_fixes else None
    manual_minutes = float(runbook.manual_minutes if manual is None else manual)
    timed = median({s: n for s, n in fixes.items() if s is not None})
    return KnownError(
        name=runbook.name,
        title=runbook.title,
        runbook=f"/runbooks/{runbook.name}",
        alerts=runbook.alerts,
        hammers=runbook.hammers,
        occurrences=occurrences,
        per_week=round(per_day * 7, 2),
        per_month=round(per_day * DAYS_PER_MONTH, 2),
        manual_minutes=round(manual_minutes, 1),
        hammer_minutes=None if timed is None else round(max(0.0, timed) / 60, 1),
        hand_fixes=hand_fixes,
        hammer_fixes=hammer_fixes,
        # a hammer's minutes are nobody's time: each verified fix saved a person the whole hand fix
        saved_minutes=round(hammer_fixes * manual_minutes, 1),
        budget_5y_minutes=round(budget_5y(per_day, manual_minutes), 1),
        automated=any(h in known and any(p.mode(h) != "off" for p in policies) for h in runbook.hammers),
    )


def _count_site(session: Session, tally: _Tally, site: str, now: datetime, days: float, policy: Policy) -> None:
    """Add one site's records to the tally: five aggregate queries, each bounded by the site and a time range."""
    # since when the store has watched the site: its first sweep (sweeps are kept), or an incident before any
    first = session.execute(
        select(
            select(func.min(Sweep.started_at)).where(Sweep.site == site).scalar_subquery(),
            select(func.min(Incident.opened_at)).where(Incident.site == site).scalar_subquery(),
        )
    ).one()
    known_since = [t for t in first if t is not None]
    if not known_since:
        return  # nothing was ever recorded here
    watched = (now - min(known_since)).total_seconds() / 86400
    findings_days = max(MIN_DAYS, min(days, watched, policy.retention.findings_days))
    incidents_days = max(MIN_DAYS, min(days, watched, policy.retention.incidents_days))
    window = now - timedelta(days=days)
    day = _day_number(session)

    # the site through an expression: SQLite then ranges over the seen_at index instead of every finding of the site
    found = (
        select(Finding.hammer, func.count())
        .where(
            func.coalesce(Finding.site, "") == site,
            Finding.seen_at >= now - timedelta(days=findings_days),
            Finding.seen_at <= now,
        )
        .group_by(Finding.hammer)
    )
    for hammer, count in session.execute(found):
        tally.findings[hammer] += count
        tally.finding_rate[hammer] += count / findings_days

    for alert, duplicates, count in session.execute(_incidents(site, now - timedelta(days=incidents_days), now, day)):
        tally.incidents[alert, duplicates] += count
        tally.incident_rate[alert, duplicates] += count / incidents_days

    hand = (
        select(Incident.alertname, Incident.manual_minutes, func.count())
        .where(
            Incident.site == site,
            Incident.manual_minutes.is_not(None),
            Incident.opened_at >= window,
            Incident.opened_at <= now,
        )
        .group_by(Incident.alertname, Incident.manual_minutes)
    )
    for alert, minutes, count in session.execute(hand):
        tally.hand.setdefault(alert, Counter())[float(minutes)] += count

    # durations in steps of 0.1 min (what is shown): a few hundred groups per hammer, not one per second
    steps = func.round((day(Action.verified_at) - day(Action.started_at)) * 86400 / STEP_SECONDS)
    # grouped by an expression of the hammer, not the column: SQLite would otherwise walk the (site, hammer,
    # started_at) index over the site's whole ledger to save a sort, instead of (site, outcome) over its fixes
    hammer_key = func.coalesce(Action.hammer, "")
    timed = (
        select(hammer_key, steps, func.count())
        .where(Action.site == site, Action.outcome == "fixed", Action.started_at >= window, Action.started_at <= now)
        .group_by(hammer_key, steps)
    )
    for hammer, step, count in session.execute(timed):
        tally.fixes.setdefault(hammer, Counter())[None if step is None else float(step) * STEP_SECONDS] += count


def _incidents(site: str, since: datetime, now: datetime, day: _Day) -> Select[tuple[str, str | None, int]]:
    """Incidents per (alertname, duplicated hammer): the hammer is set when the incident's action was on a node
    where that hammer's detector had a finding around the same time (the sweep saw the same fault)."""
    finding = aliased(Finding)
    slack = SLACK.total_seconds() / 86400
    same_fault = exists().where(
        finding.site == Incident.site,
        finding.node_uuid == Action.node_uuid,
        finding.hammer == Action.hammer,
        day(finding.seen_at) <= day(func.coalesce(Action.started_at, Action.planned_at)) + slack,
        day(func.coalesce(finding.last_seen_at, finding.seen_at)) >= day(Incident.starts_at) - slack,
    )
    rows = (
        select(Incident.alertname, case((same_fault, Action.hammer), else_=None).label("duplicates"))
        .select_from(Incident)
        .outerjoin(Action, Action.id == Incident.action_id)
        .where(Incident.site == site, Incident.opened_at >= since, Incident.opened_at <= now)
        .subquery()
    )
    return select(rows.c.alertname, rows.c.duplicates, func.count()).group_by(rows.c.alertname, rows.c.duplicates)


class _Day:
    """A timestamp as a fractional day number in SQL, so both backends can subtract and compare them."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def __call__(self, column: Any) -> ColumnElement[float]:
        if self.dialect == "postgresql":
            return cast(func.extract("epoch", column), Float) / 86400.0
        return func.julianday(column)


def _day_number(session: Session) -> _Day:
    return _Day(session.get_bind().dialect.name)


def _sites(session: Session) -> list[str]:
    """Every site the store has records of, when no config says which: the sweeps' sites one index seek at a time
    (a DISTINCT would read every sweep of the year), and any only the webhook has seen."""
    found: set[str] = set(session.scalars(select(Incident.site).distinct()))
    after = ""
    while (site := session.scalar(select(func.min(Sweep.site)).where(Sweep.site > after))) is not None:
        found.add(site)
        after = site
    return sorted(found)


def _policy(settings: Settings | None, site: str) -> Policy:
    if settings is not None and site in settings.sites:
        return settings.sites[site].policy
    return _default_policy()


@lru_cache(maxsize=1)
def _default_policy() -> Policy:
    return Policy()


@lru_cache(maxsize=1)
def _registered() -> frozenset[str]:
    """The hammers this process can run; entry points are scanned once (they cost more than the queries)."""
    from hammersmith.react.hammers import load

    return frozenset(load())
