"""The maintenance workflow: take nodes out of service and bring them back, with the services doing the work.

A maintenance moves requested → waiting → in-maintenance → returning → done (or cancelled):

- *start* books the node's Blazar host with a maintenance lease in the first gap no user lease holds (a user's lease
  is never cancelled or shortened), so no user can reserve it; the record waits until that lease is ACTIVE;
- *entering* sets Ironic maintenance with a structured reason (`who: why [ticket] until T`, which is not
  hammersmith's own prefix: every hammer keeps its hands off) and silences the node's alerts in Alertmanager;
- *end* returns it: unset maintenance, optional inspection and cleaning, provide, end the lease, expire the silence,
  a cheap smoke check. A failed step stops there (`step`, `error`) and `end` again resumes from it.

`advance` moves every open maintenance of a site one step on and adopts maintenance humans set in Ironic; the CLI
(`maint`) and every sweep (`advance_site`) call it. Every step is a ledger row (hammer `maint`).
"""

from __future__ import annotations

import getpass
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc

from hammersmith.cloud.connection import SiteConnection, service_adapter
from hammersmith.cloud.snapshot import IRONIC_MICROVERSION
from hammersmith.config import Settings, Site
from hammersmith.detect import handsoff, reservations
from hammersmith.detect.reservations import Booking
from hammersmith.errors import HammersmithError
from hammersmith.maintenance.silences import Alertmanager, node_matchers
from hammersmith.react.hammers.retirement_enforcer import host_of
from hammersmith.store import Store, open_store
from hammersmith.store.maintenance import MaintenanceRow

HAMMER = "maint"
#: the steps of returning to service, in order; a record in `returning` resumes after the last one done
RETURN_STEPS = ("unset-maintenance", "inspect", "clean", "provide", "end-lease", "expire-silence", "smoke")
#: lease states of a lease that no longer holds its host
LEASE_GONE = frozenset({"TERMINATED", "DELETED", "DELETING", "ERROR"})
#: how long `start` waits for a lease starting now to become ACTIVE before leaving it to `advance`
ACTIVE_WAIT_SECONDS = 60.0
#: provision actions on the way back (inspect, clean) are waited for this long
PROVISION_TIMEOUT_SECONDS = 1800
UNKNOWN = "unknown"

log = logging.getLogger(__name__)


class MaintenanceError(HammersmithError):
    """A maintenance could not be started, ended or placed; the message says which node and why."""


@dataclass
class Context:
    """What every step needs: the site, its services, the store, and the moment the command judges by."""

    site_name: str
    site: Site
    conn: SiteConnection
    store: Store
    alertmanager: Alertmanager | None
    now: datetime
    #: the sweep's snapshot of Ironic's nodes, so advancing lists nothing again; None: list them when needed
    listed: list[dict[str, Any]] | None = None

    def nodes(self) -> list[dict[str, Any]]:
        return self.listed if self.listed is not None else _raw_nodes(self)

    @cached_property
    def blazar(self) -> ks_adapter.Adapter | None:
        """Blazar's adapter (no SDK proxy), None when the site's catalog has no reservation service."""
        return service_adapter(self.conn.conn, "reservation", self.site_name)

    @property
    def bm(self) -> Any:
        return self.conn.conn.baremetal


def alertmanager(site: Site) -> Alertmanager | None:
    return Alertmanager(site.alertmanager_url) if site.alertmanager_url else None


@contextmanager
def context(settings: Settings, site_name: str | None) -> Iterator[Context]:
    """A Context for one command: the site's connection and store, closed afterwards."""
    name, site = settings.site(site_name)
    store = open_store(settings.effective_store_url, settings.state_dir)
    conn = SiteConnection(name, site)
    try:
        yield Context(name, site, conn, store, alertmanager(site), datetime.now(UTC))
    finally:
        conn.close()
        store.close()


# --- placement: the pure part ---------------------------------------------------------------------------------------


def first_gap(
    bookings: Iterable[tuple[datetime, datetime]],
    earliest: datetime,
    length: timedelta | None = None,
    until: datetime | None = None,
) -> tuple[datetime, datetime] | None:
    """The first window at or after `earliest` that overlaps no booking ([start, end) intervals): `length` long, or
    ending at `until` (then None when no booking-free window ends there). None when it cannot be represented."""
    if (length is None) == (until is None):
        raise ValueError("give exactly one of length and until")

    def end_of(start: datetime) -> datetime:
        return until if until is not None else start + (length or timedelta())

    start = earliest
    try:
        for begins, ends in sorted(bookings):
            if ends <= start:
                continue
            if begins >= end_of(start):
                break
            start = ends
        end = end_of(start)
    except OverflowError:
        return None
    return (start, end) if start < end else None


# --- small helpers ----------------------------------------------------------------------------------------------


def _minute_up(moment: datetime) -> datetime:
    """Blazar keeps minutes: a start is rounded up, so it never begins before the booking it follows ends."""
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def _blazar_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def structured_reason(by: str, reason: str, ticket: str | None, until: datetime | None) -> str:
    """`who: why [ticket] until T`: what an operator reading Ironic needs, never starting with `hammersmith`."""
    text = f"{by}: {reason}"
    if ticket:
        text += f" [{ticket}]"
    if until is not None:
        text += f" until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if text.lower().startswith(handsoff.OWN_REASON_PREFIX):
        text = f"operator {text}"  # a person named "hammersmith..." must not look like our automated maintenance
    return text[:255]


def default_by() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return UNKNOWN


def _raw_nodes(ctx: Context, **query: Any) -> list[dict[str, Any]]:
    """Ironic's nodes with the snapshot's field names, every page."""
    nodes: list[dict[str, Any]] = []
    params: dict[str, Any] = {"detail": True, "limit": ctx.site.page_size, **query}
    while True:
        response = ctx.bm.get("/nodes", params=params, microversion=IRONIC_MICROVERSION)
        sdk_exc.raise_from_response(response)
        page = response.json()
        nodes.extend(page["nodes"])
        if not page.get("next") or not page["nodes"]:
            return nodes
        params["marker"] = page["nodes"][-1]["uuid"]


def _raw_node(ctx: Context, ident: str) -> dict[str, Any]:
    response = ctx.bm.get(f"/nodes/{ident}", microversion=IRONIC_MICROVERSION)
    if response.status_code == 404:
        raise MaintenanceError(f"no node {ident!r} in Ironic at site {ctx.site_name}")
    sdk_exc.raise_from_response(response)
    node: dict[str, Any] = response.json()
    return node


def _blazar_hosts(client: ks_adapter.Adapter) -> list[dict[str, Any]]:
    response = client.get("/os-hosts", raise_exc=False)
    sdk_exc.raise_from_response(response)
    return list(response.json()["hosts"])


def select_nodes(
    ctx: Context,
    names: Sequence[str] = (),
    *,
    resource_class: str | None = None,
    node_type: str | None = None,
    selector: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The nodes of a command: by name or UUID, or a batch by resource class, Blazar `node_type` or Ironic `extra`
    labels (all given filters must match)."""
    if names:
        return [_raw_node(ctx, name) for name in names]
    if resource_class is None and node_type is None and not selector:
        raise MaintenanceError("name the nodes, or give --resource-class, --node-type or --selector")
    nodes = _raw_nodes(ctx, **({"resource_class": resource_class} if resource_class else {}))
    if node_type is not None:
        client = ctx.blazar
        if client is None:
            raise MaintenanceError("--node-type needs Blazar, which this site's catalog does not have")
        typed = {h.get("hypervisor_hostname") for h in _blazar_hosts(client) if h.get("node_type") == node_type}
        nodes = [n for n in nodes if n["uuid"] in typed]
    for key, value in (selector or {}).items():
        nodes = [n for n in nodes if str((n.get("extra") or {}).get(key)) == value]
    return nodes


def _step(
    ctx: Context, row: MaintenanceRow, step: str, by: str, detail: str, *, ok: bool = True, **params: Any
) -> None:
    """One ledger row per step, at the time it is done, with who asked for it (outcome `succeeded` or `failed`, mode
    `operator`: a human's command, which no hammer budget, rate or breaker counts)."""
    ctx.store.record_action(
        site=ctx.site_name,
        hammer=HAMMER,
        node_uuid=row.node_uuid,
        node_name=row.node_name,
        trigger="maint",
        mode="operator",
        kind=step,
        params={"maintenance": row.id, "by": by, **params},
        outcome="succeeded" if ok else "failed",
        reason=f"{by}: {detail}",
    )


# --- Blazar --------------------------------------------------------------------------------------------------------


def _project_name(ctx: Context, project_id: str) -> str:
    """The owner as a person reads it: the project's name where Keystone shows it to us, else its ID."""
    try:
        return str(ctx.conn.conn.identity.get_project(project_id).name or project_id)
    except sdk_exc.SDKException:
        return project_id


def _place_lease(ctx: Context, row: MaintenanceRow, host: dict[str, Any], earliest: datetime) -> dict[str, Any]:
    """Book the host with a maintenance lease in the first gap from `earliest` (no user lease cancelled or cut)."""
    client = ctx.blazar
    assert client is not None
    found = reservations.live(client)
    if not found.known:
        raise MaintenanceError("Blazar's leases could not be read: the maintenance lease cannot be placed safely")
    bookings: tuple[Booking, ...] = found.bookings.get(row.node_uuid, ())
    until = row.until
    length = None if until else timedelta(hours=ctx.site.maintenance.default_hours)
    window = first_gap([(b.start, b.end) for b in bookings], earliest, length, until)
    if window is None:
        stop = until or datetime.max.replace(tzinfo=UTC)
        blocking = [b for b in bookings if b.end > earliest and b.start < stop]
        named = "; ".join(
            f"lease {b.lease} of project {_project_name(ctx, b.project)} from {b.start:%Y-%m-%d %H:%M} "
            f"to {b.end:%Y-%m-%d %H:%M} UTC"
            for b in blocking
        )
        raise MaintenanceError(
            f"node {row.node}: no time free of users' leases before {until:%Y-%m-%d %H:%M} UTC: {named}"
            if until
            else f"node {row.node}: no free time for a maintenance lease: {named}",
            hint="a user's lease is never cancelled or shortened: pick a later --until, or talk to the owner",
        )
    start, end = window
    name = f"maint-{row.node}-{row.id}"
    if not re.search(ctx.site.policy.maintenance_lease_pattern, name):
        raise MaintenanceError(
            f"the maintenance lease name {name!r} does not match policy.maintenance_lease_pattern "
            f"{ctx.site.policy.maintenance_lease_pattern!r}",
            hint="make the pattern match `maint-<node>-<id>`, or the reapers would treat it as a user's lease",
        )
    body = {
        "name": name,
        # Blazar keeps minutes: a later start is rounded up, the end down, so the lease stays inside the gap
        "start_date": "now" if start <= ctx.now else _blazar_date(_minute_up(start)),
        "end_date": _blazar_date(end),
        "reservations": [
            {
                "resource_type": "physical:host",
                "min": 1,
                "max": 1,
                "hypervisor_properties": json.dumps(["=", "$hypervisor_hostname", host["hypervisor_hostname"]]),
                "resource_properties": "",
            }
        ],
        "events": [],
    }
    response = client.post("/leases", json=body, raise_exc=False)
    if response.status_code not in (200, 201, 202):
        raise MaintenanceError(f"node {row.node}: Blazar refused the maintenance lease: {response.text[:300]}")
    lease: dict[str, Any] = response.json()["lease"]
    return lease


def _lease(ctx: Context, lease_id: str) -> dict[str, Any] | None:
    client = ctx.blazar
    if client is None:
        return None
    response = client.get(f"/leases/{lease_id}", raise_exc=False)
    if response.status_code == 404:
        return None
    sdk_exc.raise_from_response(response)
    lease: dict[str, Any] = response.json()["lease"]
    return lease


def _host_of(ctx: Context, node_uuid: str) -> dict[str, Any] | None:
    client = ctx.blazar
    if client is None:
        return None
    return host_of(client, node_uuid)


# --- start ---------------------------------------------------------------------------------------------------------


def start(
    ctx: Context,
    nodes: Sequence[dict[str, Any]],
    *,
    reason: str,
    by: str,
    ticket: str | None = None,
    until: datetime | None = None,
    when: datetime | None = None,
    kind: str = "maint",
) -> list[MaintenanceRow]:
    """Take nodes out of service: a record each, a maintenance lease in the first free gap, and (once the node is
    free) Ironic maintenance and a silence. A node whose lease cannot be placed is refused, its record cancelled."""
    if until is not None and until <= max(ctx.now, when or ctx.now):
        raise MaintenanceError(f"--until {until:%Y-%m-%d %H:%M} UTC is not after the start")
    started = []
    for node in nodes:
        row = ctx.store.open_maintenance(
            site=ctx.site_name,
            node_uuid=node["uuid"],
            node_name=node.get("name"),
            kind=kind,
            state="requested",
            reason=reason,
            by=by,
            ticket=ticket,
            start_at=max(ctx.now, when or ctx.now),
            until=until,
            now=ctx.now,
        )
        _step(ctx, row, "request", by, f"{kind} requested: {reason}", ticket=ticket)
        try:
            row = _book(ctx, row)
        except (MaintenanceError, sdk_exc.SDKException) as exc:
            row = ctx.store.update_maintenance(row.id, state="cancelled", step="lease", error=str(exc), now=ctx.now)
            _step(ctx, row, "lease", by, f"refused: {exc}", ok=False)
            raise MaintenanceError(str(exc), hint=getattr(exc, "hint", "")) from None
        started.append(_wait_and_enter(ctx, row))
    return started


def _book(ctx: Context, row: MaintenanceRow) -> MaintenanceRow:
    """The maintenance lease (when the site has Blazar and the node is a Blazar host), then state waiting."""
    host = _host_of(ctx, row.node_uuid)
    if host is None:
        _step(ctx, row, "lease", row.by, "no Blazar host for this node: no maintenance lease needed")
        until = row.until or row.start_at + timedelta(hours=ctx.site.maintenance.default_hours)
        return ctx.store.update_maintenance(row.id, state="waiting", step="lease", until=until, now=ctx.now)
    lease = _place_lease(ctx, row, host, row.start_at)
    begins = reservations.blazar_time(lease["start_date"]) or row.start_at
    ends = reservations.blazar_time(lease["end_date"])
    _step(ctx, row, "lease", row.by, f"lease {lease['name']} from {begins:%Y-%m-%d %H:%M} UTC", lease=lease["id"])
    return ctx.store.update_maintenance(
        row.id,
        state="waiting",
        step="lease",
        lease_id=lease["id"],
        start_at=begins,
        until=row.until or ends,
        now=ctx.now,
    )


def _wait_and_enter(ctx: Context, row: MaintenanceRow) -> MaintenanceRow:
    """A lease that starts now is usually ACTIVE within seconds: wait that long, else `advance` takes over."""
    if row.start_at > ctx.now + timedelta(minutes=1):
        return row
    deadline = time.monotonic() + ACTIVE_WAIT_SECONDS
    while True:
        moved = _step_on(ctx, row)
        if moved.state != "waiting" or moved.error or time.monotonic() > deadline:
            return moved
        time.sleep(2.0)


def _enter(ctx: Context, row: MaintenanceRow) -> MaintenanceRow:
    """The node is free (its maintenance lease is ACTIVE, or it has none): Ironic maintenance, then the silence."""
    reason = structured_reason(row.by, row.reason, row.ticket, row.until)
    ctx.bm.set_node_maintenance(row.node_uuid, reason=reason)
    _step(ctx, row, "ironic-maintenance", row.by, "Ironic maintenance set", reason=reason)
    silence_id = None
    if ctx.alertmanager is not None and row.until is not None:
        silence_id = ctx.alertmanager.silence(
            node_matchers(ctx.site_name, row.node),
            ctx.now,
            row.until,
            created_by=row.by,
            comment=f"hammersmith maint #{row.id}: {reason}",
        )
        _step(ctx, row, "silence", row.by, f"silence {silence_id} until {row.until:%Y-%m-%d %H:%M} UTC")
    step = "silence" if silence_id else "ironic-maintenance"
    return ctx.store.update_maintenance(
        row.id, state="in-maintenance", step=step, silence_id=silence_id, error=None, now=ctx.now
    )


# --- advance -------------------------------------------------------------------------------------------------------


def _advance_one(ctx: Context, row: MaintenanceRow) -> MaintenanceRow:
    """One step on for one open maintenance (waiting → in-maintenance; a human ending an adopted one → done)."""
    if row.state == "requested":  # a crash between the record and its lease: book it now
        return _book(ctx, row)
    if row.state == "waiting":
        lease = _lease(ctx, row.lease_id) if row.lease_id else None
        if row.lease_id and (lease is None or lease["status"] in LEASE_GONE):
            status = lease["status"] if lease else "gone"
            if row.error is None:
                _step(ctx, row, "lease", row.by, f"maintenance lease {row.lease_id} is {status}", ok=False)
            return ctx.store.update_maintenance(row.id, error=f"maintenance lease {status}", now=ctx.now)
        if (lease is None and row.start_at <= datetime.now(UTC)) or (lease and lease["status"] == "ACTIVE"):
            return _enter(ctx, row)
        return row
    if row.state == "in-maintenance" and row.kind == "adopted":
        node = _raw_node(ctx, row.node_uuid)
        if not node.get("maintenance"):
            _step(ctx, row, "done", UNKNOWN, "maintenance unset in Ironic outside hammersmith")
            return ctx.store.update_maintenance(row.id, state="done", step="done", now=ctx.now)
    return row


def _adopt(ctx: Context) -> list[MaintenanceRow]:
    """Humans' Ironic maintenance without a record gets one, so `maint list` shows every node out of service."""
    adopted = []
    for node in ctx.nodes():
        if not handsoff.operator_maintenance(node) or ctx.store.open_maintenance_of(ctx.site_name, node["uuid"]):
            continue
        row = ctx.store.open_maintenance(
            site=ctx.site_name,
            node_uuid=node["uuid"],
            node_name=node.get("name"),
            kind="adopted",
            state="in-maintenance",
            reason=node.get("maintenance_reason") or UNKNOWN,
            by=UNKNOWN,
            start_at=reservations.blazar_time(node.get("updated_at")) or ctx.now,
            until=None,
            step="adopted",
            now=ctx.now,
        )
        _step(ctx, row, "adopt", UNKNOWN, f"operator maintenance adopted: {row.reason}")
        adopted.append(row)
    return adopted


def advance(ctx: Context) -> list[MaintenanceRow]:
    """Every open maintenance of the site one step on, then adopt humans' maintenance; returns what changed. One
    record's failure is stored on it (`error`) and does not stop the others."""
    from hammersmith.maintenance.windows import reconcile  # part-time sites' windows, built on this module

    changed = reconcile(ctx)
    for row in ctx.store.maintenances(site=ctx.site_name, open_only=True):
        moved = _step_on(ctx, row)
        if moved != row:
            changed.append(moved)
    return changed + _adopt(ctx)


def _step_on(ctx: Context, row: MaintenanceRow) -> MaintenanceRow:
    """`_advance_one` with its failure stored on the record (`error`), for the next advance to retry."""
    try:
        return _advance_one(ctx, row)
    except (HammersmithError, sdk_exc.SDKException) as exc:
        return ctx.store.update_maintenance(row.id, error=str(exc), now=ctx.now)


def advance_site(site_name: str, site: Site, conn: SiteConnection, store: Store, nodes: list[dict[str, Any]]) -> None:
    """`advance` in each sweep, on the sweep's connection, store and snapshot (one login, no listing again). A
    failure is logged, not raised: the sweep reports the site's health itself."""
    ctx = Context(site_name, site, conn, store, alertmanager(site), datetime.now(UTC), nodes)
    try:
        advance(ctx)
    except (HammersmithError, sdk_exc.SDKException, ks_exc.ClientException) as exc:
        log.warning("maintenance of site %s not advanced: %s", site_name, exc)


# --- end -----------------------------------------------------------------------------------------------------------


def end(ctx: Context, nodes: Sequence[dict[str, Any]], *, by: str) -> list[MaintenanceRow]:
    """Return nodes to service, resuming where an earlier `end` stopped; a node not yet in maintenance has its
    request cancelled (its lease deleted). Stops at the first node whose return fails, saying where."""
    ended = []
    for node in nodes:
        row = ctx.store.open_maintenance_of(ctx.site_name, node["uuid"])
        if row is None:
            raise MaintenanceError(f"node {node.get('name') or node['uuid']} has no open maintenance")
        if row.state in ("requested", "waiting"):
            ended.append(_cancel(ctx, row, by))
            continue
        if row.state != "returning":
            _step(ctx, row, "end", by, "returning to service")
            row = ctx.store.update_maintenance(row.id, state="returning", step=None, error=None, now=ctx.now)
        row = _return(ctx, row, by)
        ended.append(row)
        if row.error:
            break
    return ended


def _cancel(ctx: Context, row: MaintenanceRow, by: str) -> MaintenanceRow:
    if row.lease_id:
        _delete_lease(ctx, row.lease_id)
    _step(ctx, row, "cancel", by, "cancelled before the node was taken out of service", lease=row.lease_id)
    return ctx.store.update_maintenance(row.id, state="cancelled", step="cancel", error=None, now=ctx.now)


def _delete_lease(ctx: Context, lease_id: str) -> None:
    client = ctx.blazar
    if client is None:
        return
    response = client.delete(f"/leases/{lease_id}", raise_exc=False)
    if response.status_code not in (200, 202, 204, 404):
        raise MaintenanceError(f"Blazar did not delete lease {lease_id}: HTTP {response.status_code} {response.text}")


def _return(ctx: Context, row: MaintenanceRow, by: str) -> MaintenanceRow:
    """The return steps from where this record stands; the first failure is stored (`step`, `error`) and returned."""
    if row.error and row.step in RETURN_STEPS:
        todo = RETURN_STEPS[RETURN_STEPS.index(row.step) :]
    elif row.step in RETURN_STEPS:
        todo = RETURN_STEPS[RETURN_STEPS.index(row.step) + 1 :]
    else:
        todo = RETURN_STEPS
    for step in todo:
        try:
            detail = RETURNERS[step](ctx, row)
        except (HammersmithError, sdk_exc.SDKException) as exc:
            _step(ctx, row, step, by, f"stopped: {exc}", ok=False)
            return ctx.store.update_maintenance(row.id, step=step, error=str(exc), now=ctx.now)
        if detail is not None:
            _step(ctx, row, step, by, detail)
        row = ctx.store.update_maintenance(row.id, step=step, error=None, now=ctx.now)
    _step(ctx, row, "done", by, "back in service")
    return ctx.store.update_maintenance(row.id, state="done", step="done", now=ctx.now)


def _unset_maintenance(ctx: Context, row: MaintenanceRow) -> str | None:
    """First, because Ironic neither inspects nor cleans a node in maintenance; the lease still keeps users off."""
    if not ctx.bm.get_node(row.node_uuid).is_maintenance:
        return None
    ctx.bm.unset_node_maintenance(row.node_uuid)
    return "Ironic maintenance unset"


def _provision(ctx: Context, row: MaintenanceRow, target: str, expect: str) -> None:
    ctx.bm.set_node_provision_state(row.node_uuid, target, wait=False)
    node = ctx.bm.wait_for_nodes_provision_state([row.node_uuid], expect, timeout=PROVISION_TIMEOUT_SECONDS)[0]
    if node.provision_state != expect:
        raise MaintenanceError(f"{target} left the node {node.provision_state}: {node.last_error}")


def _manageable(ctx: Context, row: MaintenanceRow) -> None:
    if ctx.bm.get_node(row.node_uuid).provision_state != "manageable":
        _provision(ctx, row, "manage", "manageable")


def _inspect(ctx: Context, row: MaintenanceRow) -> str | None:
    if not ctx.site.maintenance.inspect_on_return:
        return None
    _manageable(ctx, row)
    _provision(ctx, row, "inspect", "manageable")
    return "inspected"


def _clean(ctx: Context, row: MaintenanceRow) -> str | None:
    """Ironic's automated cleaning runs on `provide` from manageable: getting there is the whole step."""
    if not ctx.site.maintenance.clean_on_return:
        return None
    _manageable(ctx, row)
    return "manageable, so that provide cleans it"


def _provide(ctx: Context, row: MaintenanceRow) -> str | None:
    state = ctx.bm.get_node(row.node_uuid).provision_state
    if state == "available":
        return None
    if state != "manageable":
        raise MaintenanceError(f"the node is {state}: only a manageable node can be provided")
    _provision(ctx, row, "provide", "available")
    return "provided: available"


def _end_lease(ctx: Context, row: MaintenanceRow) -> str | None:
    if not row.lease_id:
        return None
    _delete_lease(ctx, row.lease_id)
    return f"maintenance lease {row.lease_id} deleted"


def _expire_silence(ctx: Context, row: MaintenanceRow) -> str | None:
    if not row.silence_id:
        return None
    if ctx.alertmanager is None:
        raise MaintenanceError(f"silence {row.silence_id} to expire, but the site has no alertmanager_url")
    ctx.alertmanager.expire(row.silence_id)
    return f"silence {row.silence_id} expired"


def _smoke(ctx: Context, row: MaintenanceRow) -> str | None:
    """Cheap proof the node is usable again: its power interface validates, its power state reads, and its
    Blazar host is reservable (Blazar may take a moment to move it back to the free pool)."""
    if not ctx.site.maintenance.smoke_on_return:
        return None
    result = ctx.bm.validate_node(row.node_uuid, required=())
    power = result.get("power")
    if power is not None and not power.result:
        raise MaintenanceError(f"power interface does not validate: {power.reason}")
    node = ctx.bm.get_node(row.node_uuid)
    if node.power_state is None:
        raise MaintenanceError("power state not readable")
    if node.is_maintenance or node.provision_state != "available":
        raise MaintenanceError(f"node is {node.provision_state}, maintenance {node.is_maintenance}")
    host = _host_of(ctx, row.node_uuid)
    deadline = time.monotonic() + 60
    while host is not None and not host.get("reservable"):
        if time.monotonic() > deadline:
            raise MaintenanceError(f"Blazar host {host['id']} is not reservable")
        time.sleep(2.0)
        host = _host_of(ctx, row.node_uuid)
    return f"smoke ok: available, power state {node.power_state!r}" + (", reservable in Blazar" if host else "")


RETURNERS = {
    "unset-maintenance": _unset_maintenance,
    "inspect": _inspect,
    "clean": _clean,
    "provide": _provide,
    "end-lease": _end_lease,
    "expire-silence": _expire_silence,
    "smoke": _smoke,
}


# --- retire --------------------------------------------------------------------------------------------------------


def retire(ctx: Context, nodes: Sequence[dict[str, Any]], *, reason: str, by: str) -> list[MaintenanceRow]:
    """Mark nodes `retired` in Ironic (moved to manageable first: Ironic retires no `available` node); the
    retirement-enforcer hammer then takes their hosts out of Blazar. An open maintenance of the node is closed."""
    retired = []
    for node in nodes:
        current = ctx.store.open_maintenance_of(ctx.site_name, node["uuid"])
        if current is not None:  # its lease would keep Blazar from letting the host go, its silence hide alerts
            _end_lease(ctx, current)
            if current.silence_id and ctx.alertmanager is not None:
                ctx.alertmanager.expire(current.silence_id)
            _step(ctx, current, "retire", by, "closed: the node is retired")
            ctx.store.update_maintenance(current.id, state="done", step="retired", now=ctx.now)
        row = ctx.store.open_maintenance(
            site=ctx.site_name,
            node_uuid=node["uuid"],
            node_name=node.get("name"),
            kind="retire",
            state="in-maintenance",
            reason=reason,
            by=by,
            start_at=ctx.now,
            until=None,
            now=ctx.now,
        )
        try:
            if node.get("provision_state") == "available":
                _provision(ctx, row, "manage", "manageable")
            text = structured_reason(by, reason, None, None)
            ctx.bm.patch_node(
                row.node_uuid,
                [
                    {"op": "add", "path": "/retired", "value": True},
                    {"op": "add", "path": "/retired_reason", "value": text},
                ],
            )
        except (HammersmithError, sdk_exc.SDKException) as exc:
            _step(ctx, row, "retire", by, f"stopped: {exc}", ok=False)
            retired.append(ctx.store.update_maintenance(row.id, step="retire", error=str(exc), now=ctx.now))
            continue
        _step(ctx, row, "retire", by, f"retired in Ironic: {text}")
        retired.append(ctx.store.update_maintenance(row.id, state="done", step="retired", now=ctx.now))
    return retired
