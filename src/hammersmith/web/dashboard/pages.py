"""The dashboard's read-only pages: overview, node, ledger, incidents, maintenance, toil.

Each page reads the agent's last snapshot of a site (in memory) and bounded store queries (a time range on an
indexed column, a keyset page, a limit): its cost does not grow with a year of sweeps or ledger. Handlers are
plain `def`s, so FastAPI runs them in its thread pool and a store query never blocks the event loop.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import PurePath
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Site
from hammersmith.maintenance import windows as windows_mod
from hammersmith.maintenance.times import RELATIVE, UNITS
from hammersmith.react import runbooks
from hammersmith.react import toil as ranking
from hammersmith.react.hammers import load as load_hammers
from hammersmith.store.dashboard import FindingRow, NodeCounts
from hammersmith.store.maintenance import MaintenanceRow
from hammersmith.store.models import ActionRow, BreakerRow, IncidentRow, SweepRow
from hammersmith.store.pauses import PauseRow
from hammersmith.store.results import ResultRow
from hammersmith.web.dashboard import plots
from hammersmith.web.dashboard.auth import Viewer, Web
from hammersmith.web.dashboard.templating import render
from hammersmith.web.state import WebState

router = APIRouter()

#: how far back the nodes-by-state plot looks, and about how many points it draws
HISTORY = timedelta(days=7)
HISTORY_POINTS = 300
#: probe and smoke history: this many buckets of this width, newest last
RESULT_BUCKETS, RESULT_BUCKET_SECONDS = 24, 3600
#: a snapshot older than this many sweep intervals is stale (red)
STALE_INTERVALS = 3
PAGE_SIZE = 100
#: ledger state fields shown first in before -> after
KEY_FIELDS = ("provision_state", "power_state", "maintenance", "maintenance_reason", "status", "last_error")
#: the ledger's outcomes, offered in its filter (any other value may still be typed)
OUTCOMES = (
    "observed",
    "refused",
    "in_flight",
    "succeeded",
    "fixed",
    "ineffective",
    "unverified",
    "failed",
    "escalated",
    "reconciled",
    "recorded",
)
UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
#: the Ironic fields the node page shows (a field a site's Ironic does not return shows as empty)
NODE_FIELDS = (
    "uuid",
    "name",
    "provision_state",
    "target_provision_state",
    "provision_updated_at",
    "power_state",
    "maintenance",
    "maintenance_reason",
    "retired",
    "retired_reason",
    "resource_class",
    "instance_uuid",
    "last_error",
    "conductor",
    "reservation",
)
#: Ironic states that need a person or a hammer
ATTENTION = re.compile(r"fail|error|wait")


# -- shared helpers -----------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _runbook_names() -> frozenset[str]:
    return frozenset(runbooks.catalogue())


@lru_cache(maxsize=1)
def _hammer_names() -> tuple[str, ...]:
    """Registered hammers (entry points are read once per process: a page must not pay for it each time)."""
    return tuple(sorted(load_hammers()))


def _not_found(request: Request, account: Any, message: str) -> HTMLResponse:
    return render(
        request, "dashboard/error.html", account, status_code=404, heading="Not found", message=message, login=None
    )


def _since(text: str, now: datetime) -> datetime:
    """An age back from now ("30m", "2h", "7d") or an ISO time (naive: UTC); ValueError otherwise."""
    value = text.strip()
    relative = RELATIVE.fullmatch(value)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(**{UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use an age like 30m, 2h, 7d or an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _query(**params: Any) -> str:
    """A query string of the filters that are set, for the next-page and filter links."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "", False)})


@dataclass(frozen=True)
class Change:
    key: str
    before: str
    after: str


def _short(value: Any) -> str:
    text = "—" if value is None else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """before -> after, compactly: the fields that changed (state fields first); with only one side, its state
    fields."""
    before, after = before or {}, after or {}
    keys = [k for k in KEY_FIELDS if k in before or k in after]
    keys += sorted((set(before) | set(after)) - set(KEY_FIELDS))
    if before and after:
        return [Change(k, _short(before.get(k)), _short(after.get(k))) for k in keys if before.get(k) != after.get(k)]
    side = before or after
    return [
        Change(k, _short(before.get(k)) if before else "", _short(after.get(k)) if after else "")
        for k in keys
        if k in side
    ][:4]


#: ledger writers besides the hammers whose rows are about one node (the maintenance workflow)
NODE_WRITERS = frozenset({"maint"})


def node_href(web: WebState) -> Callable[[ActionRow], str | None]:
    """The node page of a ledger row, or None: a person's act on a site or an account (pause, user, breaker) and
    a cross-service hammer's subject (`server/<id>`) are not nodes."""
    sites, writers = set(web.settings.sites), NODE_WRITERS | set(_hammer_names())

    def href(row: ActionRow) -> str | None:
        if row.site not in sites or row.hammer not in writers or "/" in row.node_uuid or row.node_uuid == "*":
            return None
        return f"/nodes/{quote(row.site, safe='')}/{quote(row.node_name or row.node_uuid, safe='')}"

    return href


# -- overview ----------------------------------------------------------------------------------------------------


@dataclass
class ResultLine:
    """One probe or smoke check: its latest outcome and a strip of hourly cells (worst outcome per hour)."""

    latest: ResultRow
    cells: list[tuple[str, str]] = field(default_factory=list)

    @property
    def report_name(self) -> str | None:
        return PurePath(self.latest.report).name if self.latest.report else None


@dataclass
class SiteView:
    name: str
    interval: int
    snapshot: Snapshot | None
    last_sweep: SweepRow | None
    as_of: datetime | None
    source: str
    stale: bool
    counts: dict[str, int]
    maintenance: dict[str, int]
    total: int
    plot: plots.Plot
    breaker: BreakerRow | None
    pauses: list[PauseRow]
    results: list[ResultLine]
    incidents: list[IncidentRow]
    attention: list[dict[str, Any]]
    findings: list[FindingRow]
    offline: windows_mod.SiteState | None
    hammers: list[str]


def _result_lines(web: WebState, site: str, now: datetime) -> list[ResultLine]:
    width = RESULT_BUCKET_SECONDS
    first = int(now.timestamp()) // width - RESULT_BUCKETS + 1
    worst: dict[tuple[str, str, int], Counter[str]] = {}
    for b in web.store.result_buckets(site, datetime.fromtimestamp(first * width, UTC), width):
        worst.setdefault((b.source, b.name, b.bucket), Counter())[b.status] += b.count
    lines = []
    for latest in web.store.latest_checks(site):
        line = ResultLine(latest)
        for bucket in range(first, first + RESULT_BUCKETS):
            seen = worst.get((latest.source, latest.name, bucket), Counter())
            status = next((s for s in ("failed", "passed", "skipped") if seen[s]), "none")
            at = datetime.fromtimestamp(bucket * width, UTC).strftime("%H:%M")
            tip = ", ".join(f"{n} {s}" for s, n in sorted(seen.items())) or "no run"
            line.cells.append((status, f"{at} UTC: {tip}"))
        lines.append(line)
    return sorted(lines, key=lambda r: (r.latest.source, r.latest.name))


def _site_view(web: WebState, name: str, site: Site, incidents: list[IncidentRow], now: datetime) -> SiteView:
    snap = web.latest.get(name)
    last = web.store.last_sweep(name, ok_only=False)
    if snap is not None:
        nodes, as_of, source = snap.summary()["nodes"], snap.finished_at, "snapshot"
    elif last is not None and isinstance(last.summary.get("nodes"), dict):
        nodes, as_of, source = last.summary["nodes"], last.finished_at, "last sweep"
    else:
        nodes, as_of, source = {}, last.finished_at if last is not None else None, "none"
    stale = as_of is None or (now - as_of).total_seconds() > STALE_INTERVALS * site.sweep_interval_seconds
    history = web.store.node_counts(name, now - HISTORY, now=now, points=HISTORY_POINTS)
    attention = [
        n
        for n in (snap.nodes if snap is not None else [])
        if n.get("maintenance") or ATTENTION.search(n.get("provision_state") or "") or n.get("last_error")
    ]
    since = last.started_at if last is not None else now - timedelta(hours=1)
    try:
        offline = windows_mod.state(site, now) if site.schedules else None
    except windows_mod.CalendarError:
        offline = None
    return SiteView(
        name=name,
        interval=site.sweep_interval_seconds,
        snapshot=snap,
        last_sweep=last,
        as_of=as_of,
        source=source,
        stale=stale,
        counts=dict(nodes.get("provision_state") or {}),
        maintenance=dict(nodes.get("maintenance") or {}),
        total=int(nodes.get("total") or sum((nodes.get("provision_state") or {}).values())),
        plot=plots.nodes_by_state(history, _plot_start(history, now), now, f"nodes by provision state at {name}"),
        breaker=web.store.breaker(name),
        pauses=web.store.pauses(name, now),
        results=_result_lines(web, name, now),
        incidents=[i for i in incidents if i.site == name],
        attention=sorted(attention, key=lambda n: n.get("name") or n["uuid"])[:50],
        findings=web.store.recent_findings(name, since),
        offline=offline,
        hammers=list(_hammer_names()),
    )


def _plot_start(history: list[NodeCounts], now: datetime) -> datetime:
    """The plot starts at its first point (at most HISTORY ago, at least an hour back): an agent started
    yesterday draws one day across the width, not a sliver at the right of an empty week."""
    first = history[0].at if history else now - HISTORY
    return max(now - HISTORY, min(first, now - timedelta(hours=1)))


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, account: Viewer, web: Web) -> HTMLResponse:
    now = _now()
    incidents = web.store.incidents(open_only=True, limit=200)
    sites = [_site_view(web, name, site, incidents, now) for name, site in web.settings.sites.items()]
    return render(request, "dashboard/overview.html", account, sites=sites, now=now, runbook_names=_runbook_names())


# -- node --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """Part of a node's cross-service view: the items found, or None with why the listing was not read."""

    items: list[dict[str, Any]] | None
    why: str = ""


def _listing(snap: Snapshot | None, name: str, service: str) -> tuple[list[dict[str, Any]] | None, str]:
    if snap is None:
        return None, "no snapshot yet (the agent has not swept this site since it started)"
    items = snap.data.get(name)
    if items is not None:
        return items, ""
    read = snap.services.get(service)
    if read is None or read.status == "absent":
        return None, f"not read: the site has no {service}"
    if read.status == "incomplete":
        return None, f"not read: {read.error or service + ' incomplete'}"
    return None, f"not read: {snap.unread.get(name, 'not read')}"


def cross_service(snap: Snapshot | None, uuid: str) -> dict[str, Listing]:
    """The node as each service saw it in the snapshot: Ironic ports, Nova servers, Blazar host and leases,
    Neutron ports (by the Ironic ports' MACs), Placement providers."""
    views: dict[str, Listing] = {}
    ports, why = _listing(snap, "ports", "ironic")
    mine = [p for p in ports if p.get("node_uuid") == uuid] if ports is not None else None
    views["ports"] = Listing(mine, why)
    macs = {str(p.get("address") or "").lower() for p in mine or []}
    servers, why = _listing(snap, "servers", "nova")
    views["servers"] = Listing(
        None if servers is None else [s for s in servers if s.get("OS-EXT-SRV-ATTR:hypervisor_hostname") == uuid],
        why,
    )
    hosts, why = _listing(snap, "blazar_hosts", "blazar")
    allocations, why_alloc = _listing(snap, "host_allocations", "blazar")
    leases, why_leases = _listing(snap, "leases", "blazar")
    host_list = None if hosts is None else [h for h in hosts if h.get("hypervisor_hostname") == uuid]
    views["blazar_hosts"] = Listing(host_list, why)
    if host_list is None or allocations is None or leases is None:
        views["leases"] = Listing(None, why or why_alloc or why_leases)
    else:
        ids = {str(h.get("id")) for h in host_list}
        by_lease = {lease.get("id"): lease for lease in leases}
        booked = []
        for allocation in allocations:
            if str(allocation.get("resource_id")) in ids:
                for reservation in allocation.get("reservations") or []:
                    lease = by_lease.get(reservation.get("lease_id"), {})
                    booked.append({**reservation, "lease": lease})
        views["leases"] = Listing(booked)
    network_ports, why = _listing(snap, "network_ports", "neutron")
    views["network_ports"] = Listing(
        None
        if network_ports is None
        else [p for p in network_ports if str(p.get("mac_address") or "").lower() in macs],
        why,
    )
    providers, why = _listing(snap, "resource_providers", "placement")
    views["resource_providers"] = Listing(
        None if providers is None else [p for p in providers if p.get("name") == uuid], why
    )
    return views


@router.get("/nodes/{site}/{node}", response_class=HTMLResponse)
def node_page(request: Request, site: str, node: str, account: Viewer, web: Web) -> HTMLResponse:
    if site not in web.settings.sites:
        return _not_found(request, account, f"There is no site named {site!r} in this agent's configuration.")
    snap = web.latest.get(site)
    found = next((n for n in snap.nodes if node in (n.get("uuid"), n.get("name"))), None) if snap else None
    if found is not None:
        uuid, name = str(found["uuid"]), found.get("name")
    elif web.store.node_known(site, node):
        uuid, name = node, None
    else:
        uuid, name = web.store.node_uuid_by_name(site, node) or "", node
        if not uuid:
            return _not_found(
                request, account, f"No node {node!r} at site {site}: not in the last snapshot and never recorded."
            )
    refs = [r for r in (uuid, name) if r]
    return render(
        request,
        "dashboard/node.html",
        account,
        site=site,
        uuid=uuid,
        name=name,
        node=_node_fields(found) if found is not None else None,
        snapshot=snap,
        views=cross_service(snap, uuid) if found is not None else {},
        project_names=snap.project_names if snap is not None else {},
        findings=web.store.node_findings(site, uuid),
        actions=web.store.node_actions(site, uuid),
        incidents=web.store.node_incidents(site, refs),
        maintenances=web.store.node_maintenances(site, uuid),
        changes=changes,
        node_href=node_href(web),
        runbook_names=_runbook_names(),
    )


def _node_fields(found: dict[str, Any]) -> dict[str, Any]:
    """Every field the page shows (None where this Ironic has none), Ironic's timestamp text made a datetime."""
    node = {**dict.fromkeys(NODE_FIELDS), **found}
    try:
        node["provision_updated_at"] = datetime.fromisoformat(node["provision_updated_at"])
    except (TypeError, ValueError):
        node["provision_updated_at"] = None
    return node


# -- ledger ------------------------------------------------------------------------------------------------------


@router.get("/ledger", response_class=HTMLResponse)
def ledger(
    request: Request,
    account: Viewer,
    web: Web,
    site: str = "",
    hammer: str = "",
    node: str = "",
    outcome: str = "",
    since: str = "",
    before: str = "",
) -> HTMLResponse:
    now, error = _now(), ""
    try:
        start = _since(since, now) if since.strip() else None
    except ValueError as exc:
        start, error = None, str(exc)
    pairs = _node_pairs(web, node.strip(), site.strip())
    rows: list[ActionRow] = web.store.ledger_page(
        site=site.strip() or None,
        hammer=hammer.strip() or None,
        node=node.strip() if node.strip() and not pairs else None,
        nodes=pairs,
        outcome=outcome.strip() or None,
        since=start,
        before_id=_int(before),
        limit=PAGE_SIZE + 1,
    )
    filters = {"site": site, "hammer": hammer, "node": node, "outcome": outcome, "since": since}
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render(
        request,
        "dashboard/ledger.html",
        account,
        rows=rows,
        filters=filters,
        error=error,
        sites=list(web.settings.sites),
        hammers=sorted({*_hammer_names(), "pause"}),
        outcomes=OUTCOMES,
        next_page=f"/ledger?{_query(**filters, before=rows[-1].id)}" if more else None,
        first_page=f"/ledger?{_query(**filters)}" if _int(before) else None,
        changes=changes,
        node_href=node_href(web),
        runbook_names=_runbook_names(),
    )


def _node_pairs(web: WebState, node: str, site: str) -> list[tuple[str, str]]:
    """(site, UUID) of a node the ledger filter names, from the last snapshots (a UUID as it is, at every site):
    the ledger is then read through its (site, node_uuid) index, not scanned for a name. [] when unknown."""
    if not node:
        return []
    sites = [site] if site else list(web.settings.sites)
    if UUID.fullmatch(node):
        return [(s, node) for s in sites]
    pairs = []
    for name in sites:
        snap = web.latest.get(name)
        pairs += [(name, str(n["uuid"])) for n in (snap.nodes if snap else []) if n.get("name") == node]
    return pairs


# -- incidents ---------------------------------------------------------------------------------------------------


@router.get("/incidents", response_class=HTMLResponse)
def incidents(
    request: Request,
    account: Viewer,
    web: Web,
    site: str = "",
    state: str = "open",
    alertname: str = "",
    before: str = "",
) -> HTMLResponse:
    rows = web.store.incident_page(
        site=site.strip() or None,
        open_only=state != "all",
        alertname=alertname.strip() or None,
        before_id=_int(before),
        limit=PAGE_SIZE + 1,
    )
    filters = {"site": site, "state": state, "alertname": alertname}
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render(
        request,
        "dashboard/incidents.html",
        account,
        rows=rows,
        filters=filters,
        sites=list(web.settings.sites),
        alertnames=web.store.alertnames(),
        next_page=f"/incidents?{_query(**filters, before=rows[-1].id)}" if more else None,
        first_page=f"/incidents?{_query(**filters)}" if _int(before) else None,
        runbook_names=_runbook_names(),
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident(request: Request, incident_id: str, account: Viewer, web: Web) -> HTMLResponse:
    found = web.store.incident(int(incident_id)) if incident_id.isdigit() else None
    if found is None:
        return _not_found(request, account, f"There is no incident {incident_id!r}.")
    action = web.store.action_row(found.action_id) if found.action_id is not None else None
    return render(
        request,
        "dashboard/incident.html",
        account,
        incident=found,
        action=action,
        changes=changes,
        node_href=node_href(web),
        runbook_names=_runbook_names(),
        node_uuid=_incident_node(web, found),
    )


def _incident_node(web: WebState, found: IncidentRow) -> str | None:
    """The node page to link to, when the incident names a node of a site this agent knows."""
    return found.node if found.node and found.site in web.settings.sites else None


# -- maintenance -------------------------------------------------------------------------------------------------


@dataclass
class Day:
    day: date
    maintenances: list[MaintenanceRow]
    windows: list[windows_mod.Window]
    today: bool


@router.get("/maintenance", response_class=HTMLResponse)
def maintenance(request: Request, account: Viewer, web: Web, site: str = "", start: str = "") -> HTMLResponse:
    now = _now()
    try:
        first = date.fromisoformat(start) if start else now.date()
    except ValueError:
        first = now.date()
    first -= timedelta(days=first.weekday())  # weeks start on Monday
    begin = datetime.combine(first, datetime.min.time(), UTC)
    end = begin + timedelta(weeks=4)
    rows = web.store.maintenances_between(begin, end, site=site or None)
    problems: list[str] = []
    found: list[tuple[str, windows_mod.Window]] = []
    for name, config in web.settings.sites.items():
        if site and name != site:
            continue
        try:
            found += [(name, w) for w in windows_mod.site_windows(config, begin, end)]
        except windows_mod.CalendarError as exc:
            problems.append(f"{name}: {exc}")
    days = []
    for offset in range(28):
        day_start = begin + timedelta(days=offset)
        day_end = day_start + timedelta(days=1)
        days.append(
            Day(
                day=day_start.date(),
                maintenances=[m for m in rows if m.start_at < day_end and _maint_end(m, now) >= day_start],
                windows=[w for _, w in found if w.start < day_end and w.end > day_start],
                today=day_start.date() == now.date(),
            )
        )
    return render(
        request,
        "dashboard/maintenance.html",
        account,
        weeks=[days[i : i + 7] for i in range(0, 28, 7)],
        rows=rows,
        windows=found,
        problems=problems,
        sites=list(web.settings.sites),
        site=site,
        begin=begin,
        end=end,
        previous=(first - timedelta(weeks=4)).isoformat(),
        following=(first + timedelta(weeks=4)).isoformat(),
        now=now,
    )


def _maint_end(row: MaintenanceRow, now: datetime) -> datetime:
    """Where a maintenance's bar ends: when it ended, else its `until`, else (open-ended) now or later."""
    if row.ended_at is not None:
        return row.ended_at
    return max(row.until or now, now) if row.open else (row.until or row.updated_at)


# -- toil --------------------------------------------------------------------------------------------------------


#: how long a ranking is shown before it is computed again: its figures are rates per week and month, and at a
#: year of ledger a ranking costs about 50-150 ms of SQL (bench/dashboard.py)
TOIL_SECONDS = 120.0


@router.get("/toil", response_class=HTMLResponse)
def toil(request: Request, account: Viewer, web: Web, site: str = "") -> HTMLResponse:
    cached = web.memo.get(f"toil:{site}")
    if cached is not None and time.monotonic() - cached[0] < TOIL_SECONDS:
        rows = cached[1]
    else:
        rows = [e.to_dict() for e in ranking.rank(web.store, site=site or None, now=_now(), settings=web.settings)]
        web.memo[f"toil:{site}"] = (time.monotonic(), rows)
    # the name cell carries the title and the runbook link: the two would only widen the table as columns
    columns = [c for c in rows[0] if c not in ("title", "runbook")] if rows else []
    return render(
        request,
        "dashboard/toil.html",
        account,
        rows=rows,
        columns=columns,
        site=site,
        sites=list(web.settings.sites),
        runbook_names=_runbook_names(),
    )
