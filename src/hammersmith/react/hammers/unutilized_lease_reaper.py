"""unutilized-lease-reaper: a lease whose nodes run no instance for hours keeps them from everyone else. Its owner
is told once; still idle `idle_lease_grace_hours` later, the lease is ended early (and the owner told why).

Chameleon's version had no memory: it mailed every hour between 6 h and 9 h. Here the notices store is the memory
(hammers.MEMORY, set by the sweep): a notice goes once per lease, and a lease used after its owner was told is left
alone for good. The lease itself is never written for bookkeeping.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from keystoneauth1 import adapter as ks_adapter
from openstack.connection import Connection
from openstack.exceptions import NotFoundException, raise_from_response

from hammersmith.cloud.connection import SiteConnection, service_adapter
from hammersmith.cloud.snapshot import Snapshot, server_date
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, finding, node_time
from hammersmith.detect.reservations import Reservations, blazar_time
from hammersmith.react import notices, safety
from hammersmith.react.hammers import MEMORY, Action, Live, Memory, ObjectHammer, hammer
from hammersmith.react.notices import Notice, NoticeFailed

log = logging.getLogger(__name__)

HYPERVISOR = "OS-EXT-SRV-ATTR:hypervisor_hostname"
#: Blazar lease states in which a change to the lease is still under way
MOVING = frozenset({"CREATING", "STARTING", "UPDATING", "TERMINATING", "DELETING"})
#: what the ledger keeps of a lease as "before" and "after"
KEPT = ("name", "status", "project_id", "user_id", "start_date", "end_date")


def idle_key(lease_id: str) -> str:
    return f"lease-idle:{lease_id}"


def told_at(memory: Memory | None, key: str) -> datetime | None:
    """When the notice `key` was sent; None when it was not, or outside a sweep (nothing remembered)."""
    return notices.sent_at(memory.store, memory.connection.name, key) if memory else None


def in_flight_id(memory: Memory, hammer: str, key: str) -> int | None:
    """The ledger row of the action under way on `key` (its intent is written before execute), for the notice."""
    rows = [r for r in memory.store.in_flight(memory.connection.name) if r.hammer == hammer and r.node_uuid == key]
    return rows[-1].id if rows else None


def send(memory: Memory, conn: Connection, notice: Notice, action_id: int | None) -> None:
    notices.send(memory.store, memory.connection.name, conn, memory.connection.site.notices, notice, action_id)


def nodes_by_lease(allocations: list[dict[str, Any]], hosts: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Lease ID -> the Ironic node UUIDs of its hosts (Blazar names a host by its hypervisor, the node's UUID)."""
    found: dict[str, set[str]] = {}
    for allocation in allocations:
        host = hosts.get(str(allocation.get("resource_id"))) or {}
        if not host.get("hypervisor_hostname"):
            continue
        for reservation in allocation.get("reservations") or []:
            found.setdefault(str(reservation.get("lease_id")), set()).add(str(host["hypervisor_hostname"]))
    return {lease: sorted(uuids) for lease, uuids in found.items()}


def owner_project(subject: dict[str, Any]) -> str:
    return str(subject.get("project_name") or subject.get("project_id") or "?")


def owner_notice(kind: str, lease: dict[str, Any], **values: Any) -> Notice:
    """A notice to the lease's owner (its user and project, as Blazar records them)."""
    name = lease.get("name") or lease["id"]
    return Notice(
        kind=kind,
        key=f"{kind}:{lease['id']}",
        subject=f"lease {name} ({lease['id']})",
        user_id=lease.get("user_id"),
        project_id=lease.get("project_id"),
        values={"lease_name": name, "lease_id": lease["id"], **values},
    )


def leave_alone(lease: dict[str, Any], policy: Policy) -> None:
    """Operators' leases: an excluded project (by name or ID), or a maintenance lease by its name."""
    if {lease.get("project_id"), lease.get("project_name")} & set(policy.excluded_projects):
        raise safety.Refused(f"project {owner_project(lease)} is in policy.excluded_projects")
    if re.search(policy.maintenance_lease_pattern, lease.get("name") or ""):
        raise safety.Refused(f"lease {lease.get('name')} is operators' maintenance (policy.maintenance_lease_pattern)")


def preview(memory: Memory | None, notice: Notice) -> None:
    """What would be sent, stored as pending (`hammersmith notices --pending`); a preview never stops a sweep."""
    if memory is None:
        return
    site = memory.connection
    try:
        notices.preview(memory.store, site.name, site.conn, site.site.notices, notice)
    except Exception as exc:
        log.warning("notice %s not previewed: %s", notice.key, safety.short_error(exc))


def live_lease(site: SiteConnection, ident: str) -> tuple[ks_adapter.Adapter, dict[str, Any], datetime]:
    """Blazar, one lease as it is now (NotFoundException when gone), and Blazar's clock."""
    blazar = site.adapter("reservation")
    if blazar is None:
        raise RuntimeError("Blazar is not in the catalog")
    response = blazar.get(f"/leases/{ident}", raise_exc=False)
    raise_from_response(response)
    return blazar, response.json()["lease"], server_date(response) or datetime.now(UTC)


@hammer
class UnutilizedLeaseReaper(ObjectHammer):
    """Tell the owner of a lease idle for `idle_lease_hours` (no instance on any of its nodes), once; end the lease
    through Blazar if it is still idle `idle_lease_grace_hours` after, and tell the owner it was ended."""

    name = "unutilized-lease-reaper"
    reads = ("ironic", "nova", "blazar", "keystone")
    subject = "lease"
    kept = KEPT

    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        names = snapshot.project_names
        return {
            self.key(lease["id"]): self.subject_of(
                {**lease, "project_name": names.get(lease.get("project_id") or "")}, lease["id"], lease.get("name")
            )
            for lease in snapshot.data.get("leases") or []
            if lease.get("status") == "ACTIVE"
        }

    def context(self, snapshot: Snapshot, subject: dict[str, Any]) -> dict[str, Any]:
        return self.contexts(snapshot)[subject["uuid"]]

    def contexts(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        """Per lease key: its nodes as Ironic lists them, the servers Nova has on them, and when its owner was told
        (asked of the store only for a lease that looks idle). One pass over each listing."""
        hosts = {str(h["id"]): h for h in snapshot.data.get("blazar_hosts") or []}
        nodes = {n["uuid"]: n for n in snapshot.nodes}
        servers: dict[str, list[str]] = {}
        for server in snapshot.data.get("servers") or []:
            servers.setdefault(str(server.get(HYPERVISOR)), []).append(server["id"])
        by_lease = nodes_by_lease(snapshot.data.get("host_allocations") or [], hosts)
        found = {}
        for key, subject in self.subjects(snapshot).items():
            uuids = by_lease.get(subject["id"], [])
            context: dict[str, Any] = {
                "nodes": [nodes[u] for u in uuids if u in nodes],
                "servers": [s for u in uuids for s in servers.get(u, [])],
            }
            idle = idle_since(subject, context, snapshot.now) is not None
            context["told_at"] = told_at(MEMORY.get(), idle_key(subject["id"])) if idle else None
            found[key] = context
        return found

    def judge(self, subject: dict[str, Any], context: dict[str, Any], policy: Policy, now: datetime) -> str | None:
        since = idle_since(subject, context, now)
        if since is None or now - since < timedelta(hours=policy.idle_lease_hours):
            return None
        idle = f"no instance on its {len(context['nodes'])} node(s) since {since:%Y-%m-%d %H:%M} UTC"
        told = context.get("told_at")
        if told is None:
            return f"{idle}: its owner is to be told"
        if since > told:
            return None  # used after its owner was told: left alone (the notice is never repeated)
        if now - told < timedelta(hours=policy.idle_lease_grace_hours):
            return None  # told; the grace runs
        return f"{idle}, still idle {policy.idle_lease_grace_hours:g} h after its owner was told: to be ended"

    def since(self, subject: dict[str, Any]) -> str | None:
        return subject.get("start_date")

    def guard(
        self, subject: dict[str, Any], policy: Policy, now: datetime, conn: Connection, reservations: Reservations
    ) -> None:
        leave_alone(subject, policy)

    def detect(self, snapshot: Snapshot, policy: Policy) -> list[Finding]:
        """ObjectHammer's, with the finding's `since` the moment the lease went idle (its notice says it)."""
        found = []
        contexts = self.contexts(snapshot)
        for key, subject in self.subjects(snapshot).items():
            context = contexts[key]
            if summary := self.judge(subject, context, policy, snapshot.now):
                since = idle_since(subject, context, snapshot.now)
                found.append(replace(finding(self.name, subject, summary), since=since))
        return found

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        """Stage 1 (tell) until the idle notice is sent, then stage 2 (end). Stage 1's notice is previewed (pending
        until sent): an observing sweep shows what it would tell whom."""
        memory = MEMORY.get()
        told = told_at(memory, idle_key(node["id"]))
        if told is None:
            grace = timedelta(hours=policy.idle_lease_grace_hours)
            notice = idle_notice(node, found.since, grace, datetime.now(UTC))
            try:
                leave_alone(node, policy)
                preview(memory, notice)
            except safety.Refused:
                pass  # nothing will be sent: nothing to preview (the guard records why)
            return [
                Action(self.name, found.node_uuid, found.node_name, "notify", found.summary, {"notice": notice.key})
            ]
        params = {"told_at": told.isoformat(), "notice": f"lease-ended:{node['id']}"}
        return [Action(self.name, found.node_uuid, found.node_name, "end-lease", found.summary, params)]

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        """A lease is ended only while the notice it was planned on is the one on record."""
        if action.kind != "end-lease":
            return True
        told = told_at(MEMORY.get(), idle_key(node["id"]))
        return told is not None and told.isoformat() == action.params.get("told_at")

    def read(self, site: SiteConnection, key: str) -> Live:
        """The lease, its hosts' nodes (Ironic: an instance deploying or deployed there sets instance_uuid) and its
        project's name, on Blazar's clock. Nova lists servers by node only for admins: Ironic's field stands in."""
        ident = self.ident(key)
        blazar, lease, now = live_lease(site, ident)
        allocations = blazar.get("/os-hosts/allocations", params={"lease_id": ident}).json()["allocations"]
        hosts = {str(h["id"]): h for h in blazar.get("/os-hosts").json()["hosts"]}
        uuids = nodes_by_lease(allocations, hosts).get(ident, [])
        nodes = [node for uuid in uuids if (node := present(site, uuid))]
        subject = self.subject_of({**lease, "project_name": project_name(site, lease)}, ident, lease.get("name"))
        context = {"nodes": nodes, "servers": [], "told_at": told_at(MEMORY.get(), idle_key(ident))}
        return Live(subject, [], now, context)

    def settled(self, live: Live) -> bool:
        """Ended early, a lease stays ACTIVE until Blazar's manager runs its end event (every few seconds)."""
        lease = live.node
        if lease.get("status") in MOVING:
            return False
        end = blazar_time(lease.get("end_date"))
        return not (lease.get("status") == "ACTIVE" and end is not None and end <= live.now)

    def execute(self, conn: Connection, action: Action, live: Live, lease: safety.Lease) -> None:
        memory = MEMORY.get()
        if memory is None:
            raise RuntimeError("no notices store: hammers act only within a sweep")
        policy, subject = memory.connection.site.policy, live.node
        since = idle_since(subject, live.context, live.now)
        action_id = in_flight_id(memory, self.name, action.node_uuid)
        if action.kind == "notify":
            grace = timedelta(hours=policy.idle_lease_grace_hours)
            send(memory, conn, idle_notice(subject, since, grace, live.now), action_id)
            return
        blazar = service_adapter(conn, "reservation")
        if blazar is None:
            raise RuntimeError("Blazar is not in the catalog")
        response = blazar.put(f"/leases/{subject['id']}", json={"end_date": "now"}, raise_exc=False)
        raise_from_response(response)
        reason = (
            f"no instance ran on its nodes since {since:%Y-%m-%d %H:%M} UTC, and it was still idle "
            f"{policy.idle_lease_grace_hours:g} h after you were told"
        )
        ended = owner_notice("lease-ended", subject, ended_at=live.now, reason=reason)
        try:  # the lease is ended either way: a notice that did not go is in `hammersmith notices`, not a failure
            send(memory, conn, ended, action_id)
        except NoticeFailed as exc:
            log.warning("%s", exc)


def present(site: SiteConnection, uuid: str) -> dict[str, Any] | None:
    """The node now, or None once Ironic no longer has it (the lease, not the node, is the subject: not gone)."""
    try:
        return safety.live_node(site.conn, uuid)
    except NotFoundException:
        return None


def project_name(site: SiteConnection, lease: dict[str, Any]) -> str | None:
    """For policy.excluded_projects by name; None for a project Keystone no longer has."""
    try:
        return str(site.conn.identity.get_project(lease["project_id"]).name) if lease.get("project_id") else None
    except NotFoundException:
        return None


def idle_since(subject: dict[str, Any], context: dict[str, Any], now: datetime) -> datetime | None:
    """None when the lease is not idle (not active, ending, no host, an instance on a node); else the latest of its
    start and its nodes' last provisioning change (an instance torn down since the start)."""
    start, end = blazar_time(subject.get("start_date")), blazar_time(subject.get("end_date"))
    if subject.get("status") != "ACTIVE" or start is None or (end is not None and end <= now):
        return None
    nodes = context.get("nodes") or []
    if not nodes or context.get("servers") or any(n.get("instance_uuid") for n in nodes):
        return None
    changes = [t for n in nodes if (t := node_time(n.get("provision_updated_at")))]
    return max([start, *changes])


def idle_notice(lease: dict[str, Any], since: datetime | None, grace: timedelta, now: datetime) -> Notice:
    """lease-idle: when it would be ended if still idle (the grace from now, never after its own end); idle since
    its start when not known (an alert's finding)."""
    end, since = blazar_time(lease.get("end_date")), since or blazar_time(lease.get("start_date"))
    if end is None or since is None:
        raise ValueError(f"lease {lease['id']} has no start or end date")
    return owner_notice("lease-idle", lease, idle_since=since, ends_at=min(now + grace, end), end=end)
