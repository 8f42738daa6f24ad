"""retirement-enforcer: an Ironic node marked `retired` must not be reservable in Blazar, and a reservable Blazar host
must be an Ironic node."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keystoneauth1 import adapter as ks_adapter
from openstack.connection import Connection
from openstack.exceptions import raise_from_response

from hammersmith.cloud.connection import SiteConnection, service_adapter
from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect import reservations
from hammersmith.detect.checks import Finding, finding
from hammersmith.detect.reservations import Reservations
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Hammer, Live, hammer

#: subject key prefix of a reservable Blazar host that names no Ironic node (report-only: nothing to act through)
UNKNOWN_HOST = "blazar-host"


def blazar(conn: Connection) -> ks_adapter.Adapter:
    client = service_adapter(conn, "reservation")
    if client is None:
        raise RuntimeError("the catalog has no reservation (Blazar) endpoint")
    return client


def host_of(client: ks_adapter.Adapter, node_uuid: str) -> dict[str, Any] | None:
    """The node's Blazar host as Blazar lists it now (one list call: Blazar finds hosts by ID only)."""
    response = client.get("/os-hosts", raise_exc=False)
    raise_from_response(response)
    return next((h for h in response.json()["hosts"] if h.get("hypervisor_hostname") == node_uuid), None)


@hammer
class RetirementEnforcer(Hammer):
    """Take a retired node's host out of Blazar (`DELETE /os-hosts/{id}`): Blazar 18 has no API to make a host not
    reservable (its `reservable` flag belongs to its health monitor, and `PUT` only writes extra capabilities), and a
    host Blazar still lists is leased to users. Blazar refuses while any lease holds the host: those leases are named,
    never cancelled. Reservable hosts that name no Ironic node are reported only."""

    name = "retirement-enforcer"
    reads = ("ironic", "blazar")

    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        """Nodes with their Blazar host (`blazar_host`, None when Blazar has none), and Blazar's reservable hosts of
        no Ironic node, keyed `blazar-host/<id>`."""
        hosts = {h.get("hypervisor_hostname"): h for h in snapshot.data.get("blazar_hosts") or []}
        known = {n["uuid"] for n in snapshot.nodes} | {n["name"] for n in snapshot.nodes if n.get("name")}
        found = {n["uuid"]: {**n, "blazar_host": hosts.get(n["uuid"])} for n in snapshot.nodes}
        for name, host in hosts.items():
            if name not in known and reservable(host):
                key = f"{UNKNOWN_HOST}/{host['id']}"
                found[key] = {"uuid": key, "name": name or key, "blazar_host": host}
        return found

    def detect(self, snapshot: Snapshot, policy: Policy) -> list[Finding]:
        booked = reservations.of(snapshot)
        found = []
        for subject in self.subjects(snapshot).values():
            if subject["uuid"].startswith(f"{UNKNOWN_HOST}/"):
                host = subject["blazar_host"]
                summary = (
                    f"Blazar host {host['id']} ({subject['name']}) is reservable but names no Ironic node: "
                    "leases of it cannot be deployed"
                )
                found.append(finding(self.name, subject, summary, "", host.get("updated_at") or host.get("created_at")))
            elif summary := self.matches(subject, [], policy, snapshot.now):
                leases = held_by(booked, subject, snapshot.now)
                detail = f"reserved in Blazar by {leases}: Blazar refuses to delete a reserved host" if leases else ""
                found.append(finding(self.name, subject, summary, detail, subject.get("updated_at")))
        return found

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        host = node.get("blazar_host")
        if not node.get("retired") or host is None or not reservable(host):
            return None
        why = node.get("retired_reason") or "no reason given"
        return f"retired ({why}) but reservable in Blazar as host {host['id']}"

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        if found.node_uuid.startswith(f"{UNKNOWN_HOST}/"):
            return []  # no node to act through: an operator enrols the node or deletes the host
        host = node["blazar_host"]
        params = {"host_id": host["id"]}
        return [Action(self.name, found.node_uuid, found.node_name, "delete-blazar-host", found.summary, params)]

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        """The same Blazar host: an ID re-used by a host enrolled since is not the one checked."""
        host = node.get("blazar_host") or {}
        return host.get("id") == action.params["host_id"] and host.get("hypervisor_hostname") == node["uuid"]

    def guard(
        self, subject: dict[str, Any], policy: Policy, now: datetime, conn: Connection, reservations: Reservations
    ) -> None:
        """The node's rules, and any lease of its host, however far ahead: the lease is the user's; a human decides
        whether to move it (Blazar would refuse the delete anyway)."""
        super().guard(subject, policy, now, conn, reservations)
        if leases := held_by(reservations, subject, now):
            raise safety.Refused(f"reserved in Blazar by {leases}: never cancelled by a hammer")

    def read(self, site: SiteConnection, key: str) -> Live:
        """The node (and ports), with its Blazar host read now."""
        live = safety.live(site.conn, key)
        host = host_of(blazar(site.conn), live.node["uuid"])
        return Live({**live.node, "blazar_host": host}, live.ports, live.now)

    def fields(self, subject: dict[str, Any]) -> dict[str, Any]:
        """The node's fields, its retirement, and its Blazar host (to enrol it again: `POST /os-hosts`)."""
        host = subject.get("blazar_host")
        enrolled = {k: v for k, v in host.items() if k != "trust_id"} if host else None  # Blazar's, not for a ledger
        kept = {"retired": subject.get("retired"), "retired_reason": subject.get("retired_reason")}
        return {**super().fields(subject), **kept, "blazar_host": enrolled}

    def execute(self, conn: Connection, action: Action, live: Live, lease: safety.Lease) -> None:
        response = blazar(conn).delete(f"/os-hosts/{action.params['host_id']}", raise_exc=False)
        raise_from_response(response)


def reservable(host: dict[str, Any]) -> bool:
    """Blazar's flag. An extra capability named `reservable` (a `PUT` mistaken for the flag) shadows it in the API's
    answer as a string, "0" included, while the real flag is unchanged: any string counts as reservable."""
    return bool(host.get("reservable"))


def held_by(reservations: Reservations, node: dict[str, Any], now: datetime) -> str:
    """The leases holding the node's host now or later, named with project and dates ("" when none)."""
    found = [b for b in reservations.bookings.get(node["uuid"], ()) if b.end > now]
    return ", ".join(
        f"lease {b.lease} (project {b.project}) {b.start:%Y-%m-%d %H:%M}-{b.end:%Y-%m-%d %H:%M} UTC" for b in found
    )
