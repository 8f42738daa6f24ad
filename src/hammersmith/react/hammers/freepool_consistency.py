"""freepool-consistency: Blazar's free pool and its lease aggregates in Nova agree with who holds each host."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keystoneauth1 import adapter as ks_adapter
from openstack.connection import Connection
from openstack.exceptions import raise_from_response

from hammersmith.cloud.connection import SiteConnection
from hammersmith.cloud.snapshot import NOVA_MICROVERSION, Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, finding
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Hammer, Live, hammer

#: Nova's aggregate of the hosts no lease holds: Blazar's `[nova] aggregate_freepool_name` default
FREEPOOL = "freepool"
#: the metadata key Blazar writes on each aggregate it makes for a reservation: its `[nova] blazar_owner` default
OWNER = "blazar:owner"
#: lease states in which Blazar itself is moving hosts between aggregates: judged once it is done
MOVING = frozenset({"STARTING", "UPDATING", "TERMINATING", "DELETING"})
#: lease states whose aggregates must hold no host any more (a deleted lease is not listed at all: status None)
ENDED = frozenset({"TERMINATED", None})


@dataclass(frozen=True)
class Verdict:
    """What is wrong with one host's pools, and the part a hammer may fix (the rest is for a human)."""

    summary: str
    #: aggregates of ended or deleted leases still holding the host: {"id", "name"}
    remove_from: list[dict[str, Any]] = field(default_factory=list)
    add_to_freepool: bool = False


def pools(
    aggregates: Iterable[dict[str, Any]], service_host: str, leases: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The aggregates holding the compute host, each with the lease its name is a reservation of (Blazar names a
    reservation's aggregate by the reservation's ID)."""
    held = []
    for agg in aggregates:
        if service_host in (agg.get("hosts") or []):
            lease = leases.get(agg["name"]) or {}
            blazar = OWNER in (agg.get("metadata") or {})
            held.append(
                {
                    "id": agg["id"],
                    "name": agg["name"],
                    "blazar": blazar,
                    "lease": lease.get("name"),
                    "status": lease.get("status"),
                }
            )
    return held


def by_reservation(leases: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: lease for lease in leases for r in lease.get("reservations") or []}


def enrich(
    node: dict[str, Any],
    host: dict[str, Any] | None,
    allocation: list[dict[str, Any]],
    leases: dict[str, dict[str, Any]],
    aggregates: list[dict[str, Any]],
) -> dict[str, Any]:
    """The node with what judging its host takes: its Blazar host, the free pool, the aggregates holding the host,
    and its reservations with their leases' states (the same shape from the snapshot and from a live read)."""
    freepool = next(({"id": a["id"], "name": a["name"]} for a in aggregates if a["name"] == FREEPOOL), None)
    reservations = [
        {
            "id": r["id"],
            "lease": (leases.get(r["id"]) or {}).get("name") or r.get("lease_id"),
            "status": (leases.get(r["id"]) or {}).get("status"),
        }
        for r in allocation
    ]
    held = pools(aggregates, host["service_name"], leases) if host else []
    return {**node, "blazar_host": host, "freepool": freepool, "pools": held, "reservations": reservations}


def judge(subject: dict[str, Any]) -> Verdict | None:
    """Expected: a host of an ACTIVE lease is in its reservation's aggregate and not in the free pool; any other host
    is in the free pool and in no aggregate of an ended lease. Hosts Blazar is moving are not judged."""
    host, freepool, held = subject.get("blazar_host"), subject.get("freepool"), subject.get("pools") or []
    if host is None or freepool is None:
        return None
    if any(p["status"] in MOVING for p in held if p["blazar"]) or any(
        r["status"] in MOVING for r in subject["reservations"]
    ):
        return None
    in_free = any(p["id"] == freepool["id"] for p in held)
    names = {p["name"] for p in held}
    active = [r for r in subject["reservations"] if r["status"] == "ACTIVE"]
    if active:
        wrong = [f"not in the aggregate of its active lease {r['lease']}" for r in active if r["id"] not in names]
        wrong += ["in the free pool too: offered to every project"] if in_free else []
        return Verdict(f"host {host['service_name']} of an active lease: {'; '.join(wrong)}") if wrong else None
    lease_pools = [p for p in held if p["blazar"]]
    stale = [{"id": p["id"], "name": p["name"]} for p in lease_pools if p["status"] in ENDED]
    other = [p for p in lease_pools if p["status"] not in ENDED]
    if not (stale or other or not in_free):
        return None
    wrong = [] if in_free else ["not in the free pool: its next lease fails to start"]
    wrong += [f"still in aggregate {p['name']} of an ended or deleted lease" for p in stale]
    wrong += [f"in aggregate {p['name']} of lease {p['lease']} ({p['status']}), not started" for p in other]
    summary = f"host {host['service_name']} (no active lease): {'; '.join(wrong)}"
    if other:  # a pending or failed lease's aggregate: Blazar (or a human) decides, not a hammer
        return Verdict(summary)
    return Verdict(summary, stale, not in_free)


@hammer
class FreepoolConsistency(Hammer):
    """Return a host no lease holds to Blazar's free pool, through Nova's aggregate API: out of the aggregates of ended
    or deleted leases, into `freepool`. Hosts of active leases that disagree, and hosts in the aggregate of a lease
    that has not started (or failed), are reported for a human."""

    name = "freepool-consistency"
    reads = ("ironic", "nova", "blazar")
    listings = ("aggregates",)

    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        hosts = {h.get("hypervisor_hostname"): h for h in snapshot.data.get("blazar_hosts") or []}
        allocations = {
            str(a["resource_id"]): a.get("reservations") or [] for a in snapshot.data["host_allocations"] or []
        }
        leases = by_reservation(snapshot.data.get("leases") or [])
        aggregates = snapshot.data.get("aggregates") or []
        found = {}
        for node in snapshot.nodes:
            host = hosts.get(node["uuid"])
            allocation = allocations.get(str(host["id"]), []) if host else []
            found[node["uuid"]] = enrich(node, host, allocation, leases, aggregates)
        return found

    def detect(self, snapshot: Snapshot, policy: Policy) -> list[Finding]:
        found = []
        for subject in self.subjects(snapshot).values():
            if verdict := judge(subject):
                found.append(finding(self.name, subject, verdict.summary, "", subject.get("updated_at")))
        return found

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        verdict = judge(node)
        return verdict.summary if verdict else None

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        verdict = judge(node)
        if verdict is None or not (verdict.remove_from or verdict.add_to_freepool):
            return []
        params = {
            "service_host": node["blazar_host"]["service_name"],
            "remove_from": verdict.remove_from,
            "freepool": node["freepool"] if verdict.add_to_freepool else None,
        }
        return [Action(self.name, found.node_uuid, found.node_name, "return-to-freepool", found.summary, params)]

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        """The same host, and each planned move still wanted: only what was checked is changed."""
        verdict = judge(node)
        if verdict is None or (node.get("blazar_host") or {}).get("service_name") != action.params["service_host"]:
            return False
        planned = {p["id"] for p in action.params["remove_from"]}
        return planned <= {p["id"] for p in verdict.remove_from} and (
            verdict.add_to_freepool == (action.params["freepool"] is not None)
        )

    def read(self, site: SiteConnection, key: str) -> Live:
        """The node (and ports), with its Blazar host, that host's reservations, the leases and Nova's aggregates, as
        the services show them now."""
        live = safety.live(site.conn, key)
        blazar, nova = site.adapter("reservation"), site.adapter("compute")
        if blazar is None or nova is None:
            raise RuntimeError("the catalog lacks Blazar or Nova")
        hosts = get(blazar, "/os-hosts", "hosts")
        host = next((h for h in hosts if h.get("hypervisor_hostname") == live.node["uuid"]), None)
        allocation = get(blazar, f"/os-hosts/{host['id']}/allocation", "allocation")["reservations"] if host else []
        leases = by_reservation(get(blazar, "/leases", "leases", all_tenants=True))
        aggregates = get(nova, "/os-aggregates", "aggregates", microversion=NOVA_MICROVERSION)
        return Live(enrich(live.node, host, allocation, leases, aggregates), live.ports, live.now)

    def fields(self, subject: dict[str, Any]) -> dict[str, Any]:
        """The node's fields and the aggregates holding its host (what the action changes)."""
        return {**super().fields(subject), "aggregates": sorted(p["name"] for p in subject.get("pools") or [])}

    def execute(self, conn: Connection, action: Action, live: Live, lease: safety.Lease) -> None:
        """Out of the ended leases' aggregates first, then into the free pool (Blazar's own order when a lease ends)."""
        host = action.params["service_host"]
        verdict = judge(live.node) or Verdict("")
        for agg in action.params["remove_from"]:
            if agg["id"] in {p["id"] for p in verdict.remove_from}:
                conn.compute.remove_host_from_aggregate(agg["id"], host)
        if action.params["freepool"] and verdict.add_to_freepool:
            conn.compute.add_host_to_aggregate(action.params["freepool"]["id"], host)


def get(client: ks_adapter.Adapter, path: str, key: str, microversion: str | None = None, **params: Any) -> Any:
    response = client.get(path, params=params, microversion=microversion, raise_exc=False)
    raise_from_response(response)
    return response.json()[key]
