"""Who has reserved a node through Blazar: the reservation half of the must-not-touch rules.

A node in an active lease is a user's, whatever its Ironic state (a user may have it `available`
between two launches); a node whose lease starts within `policy.lease_buffer_minutes` is about to
be, and an action started now (an inspection, a clean) could still be running when the user
arrives. Blazar's hosts name Ironic nodes by `hypervisor_hostname` (the node UUID, as the Ironic
driver of nova-compute reports it); its allocations tie hosts to reservations and leases.

When Blazar is in the catalog but could not be read, nobody knows which nodes are reserved: every
node is off limits (fails closed, like every incomplete snapshot). A lease's project is named as
Keystone lists it (the snapshot's projects), else by its ID: the name is for the reader, never a rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc

if TYPE_CHECKING:
    from hammersmith.cloud.snapshot import Snapshot

#: lease states whose hosts are free again
FINISHED = frozenset({"TERMINATED", "DELETED", "DELETING"})
UNKNOWN = "Blazar could not be read: reservations unknown (fails closed)"
#: no project names known: leases' projects are shown by ID
NO_NAMES: Mapping[str, str] = MappingProxyType({})


def blazar_time(value: Any) -> datetime | None:
    """Blazar's dates ("2026-11-30T12:00:00.000000" or "2026-11-30 12:00"), UTC when no zone is given."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Booking:
    """One reservation of one node: the lease it belongs to, and when."""

    lease: str
    #: the project's name, or its ID when Keystone's listing has no name for it
    project: str
    start: datetime
    end: datetime

    def hold(self, now: datetime, buffer: timedelta) -> str | None:
        """Why this booking keeps hands off the node now, or None."""
        if self.end <= now:
            return None
        if self.start <= now:
            return f"reserved by lease {self.lease} (project {self.project}) until {self.end:%Y-%m-%d %H:%M} UTC"
        if self.start - now <= buffer:
            return (
                f"lease {self.lease} (project {self.project}) starts at {self.start:%Y-%m-%d %H:%M} UTC "
                f"(within lease_buffer_minutes)"
            )
        return None


@dataclass(frozen=True)
class Reservations:
    """Node UUID or name -> its bookings; `known` False when Blazar is in the catalog but was not read."""

    bookings: Mapping[str, tuple[Booking, ...]]
    known: bool = True

    def hold(self, node: dict[str, Any], now: datetime, buffer_minutes: float) -> str | None:
        if not self.known:
            return UNKNOWN
        buffer = timedelta(minutes=buffer_minutes)
        for key in (node["uuid"], node.get("name")):
            for booking in self.bookings.get(key or "", ()):
                if reason := booking.hold(now, buffer):
                    return reason
        return None


NONE = Reservations({})


def index(
    hosts: Iterable[dict[str, Any]],
    allocations: Iterable[dict[str, Any]],
    leases: Iterable[dict[str, Any]],
    names: Mapping[str, str] = NO_NAMES,
) -> Reservations:
    """Join Blazar's hosts, allocations and leases into bookings per node (one pass over each list);
    `names`: project ID -> name."""
    node_of = {str(h["id"]): h.get("hypervisor_hostname") for h in hosts}
    by_lease = {lease["id"]: lease for lease in leases}
    bookings: dict[str, list[Booking]] = defaultdict(list)
    for allocation in allocations:
        node = node_of.get(str(allocation.get("resource_id")))
        for reservation in allocation.get("reservations") or []:
            lease = by_lease.get(reservation.get("lease_id"), {})
            if node is None or lease.get("status") in FINISHED:
                continue
            start = blazar_time(reservation.get("start_date") or lease.get("start_date"))
            end = blazar_time(reservation.get("end_date") or lease.get("end_date"))
            if start is None or end is None:  # a reservation without dates: held for as long as it exists
                start, end = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
            name = lease.get("name") or reservation.get("lease_id") or "?"
            project = lease.get("project_id") or "?"
            bookings[node].append(Booking(name, names.get(project) or project, start, end))
    return Reservations({node: tuple(found) for node, found in bookings.items()})


def from_snapshot(
    data: Mapping[str, list[dict[str, Any]] | None], status: str, names: Mapping[str, str] = NO_NAMES
) -> Reservations:
    """The snapshot's view: `status` is the reservation service's read ("ok", "incomplete", "absent")."""
    if status == "absent":
        return NONE
    hosts, allocations, leases = (data.get(k) for k in ("blazar_hosts", "host_allocations", "leases"))
    if status != "ok" or hosts is None or allocations is None or leases is None:
        return Reservations({}, known=False)
    return index(hosts, allocations, leases, names)


def of(snapshot: Snapshot) -> Reservations:
    blazar = snapshot.services.get("blazar")
    return from_snapshot(snapshot.data, blazar.status if blazar else "absent", snapshot.project_names)


def live(client: ks_adapter.Adapter | None, names: Mapping[str, str] = NO_NAMES) -> Reservations:
    """Blazar read again right before an action (three list calls); unknown if any of them fails.

    `names` (project ID -> name) come from the latest snapshot, not from another Keystone call per action.
    """
    if client is None:
        return NONE
    try:
        lists = []
        for path, key in (("/os-hosts", "hosts"), ("/os-hosts/allocations", "allocations"), ("/leases", "leases")):
            params = {"all_tenants": True} if key == "leases" else {}
            response = client.get(path, params=params, raise_exc=False)
            if response.status_code != 200:
                return Reservations({}, known=False)
            lists.append(response.json().get(key) or [])
    except (ks_exc.ClientException, ValueError):
        return Reservations({}, known=False)
    return index(*lists, names=names)
