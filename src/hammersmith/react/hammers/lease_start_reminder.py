"""lease-start-reminder: a lease's owner is told, once, `lease_reminder_hours` before it starts, so a lease nobody
needs any more is deleted before it holds nodes.

Chameleon's version computed "tomorrow" in the container's local time taken as UTC, and mailed again on every run.
Here every time is an aware UTC one (Blazar's naive dates are UTC), the notice shows it in UTC and the site's zone,
and the notices store (hammers.MEMORY) remembers that the owner was told.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from openstack.connection import Connection

from hammersmith.cloud.connection import SiteConnection
from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding
from hammersmith.detect.reservations import blazar_time
from hammersmith.react import safety
from hammersmith.react.hammers import MEMORY, Action, Live, ObjectHammer, hammer
from hammersmith.react.hammers.unutilized_lease_reaper import (
    KEPT,
    in_flight_id,
    live_lease,
    owner_notice,
    preview,
    send,
    told_at,
)
from hammersmith.react.notices import Notice


def starts_key(lease_id: str) -> str:
    return f"lease-starts:{lease_id}"


def reminder(lease: dict[str, Any]) -> Notice:
    start, end = blazar_time(lease.get("start_date")), blazar_time(lease.get("end_date"))
    return owner_notice("lease-starts", lease, start=start, end=end)


@hammer
class LeaseStartReminder(ObjectHammer):
    """Tell a pending lease's owner, once, that it starts within `lease_reminder_hours` (times in UTC and the
    site's zone)."""

    name = "lease-start-reminder"
    reads = ("blazar",)
    subject = "lease"
    kept = KEPT

    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        return {
            self.key(lease["id"]): self.subject_of(lease, lease["id"], lease.get("name"))
            for lease in snapshot.data.get("leases") or []
            if lease.get("status") == "PENDING"
        }

    def context(self, snapshot: Snapshot, subject: dict[str, Any]) -> dict[str, Any]:
        return {"told_at": told_at(MEMORY.get(), starts_key(subject["id"]))}

    def judge(self, subject: dict[str, Any], context: dict[str, Any], policy: Policy, now: datetime) -> str | None:
        start = blazar_time(subject.get("start_date"))
        if subject.get("status") != "PENDING" or start is None or start <= now or context.get("told_at"):
            return None
        left = start - now
        if left > timedelta(hours=policy.lease_reminder_hours):
            return None
        return f"starts at {start:%Y-%m-%d %H:%M} UTC, in {left.total_seconds() / 3600:.1f} h: its owner is to be told"

    def since(self, subject: dict[str, Any]) -> str | None:
        return subject.get("created_at")

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        """One notice; previewed (pending until sent), so an observing sweep shows what it would tell whom."""
        notice = reminder(node)
        preview(MEMORY.get(), notice)
        return [Action(self.name, found.node_uuid, found.node_name, "notify", found.summary, {"notice": notice.key})]

    def read(self, site: SiteConnection, key: str) -> Live:
        ident = self.ident(key)
        _, found, now = live_lease(site, ident)
        lease = self.subject_of(found, ident, found.get("name"))
        return Live(lease, [], now, {"told_at": told_at(MEMORY.get(), starts_key(ident))})

    def execute(self, conn: Connection, action: Action, live: Live, lease: safety.Lease) -> None:
        memory = MEMORY.get()
        if memory is None:
            raise RuntimeError("no notices store: hammers act only within a sweep")
        send(memory, conn, reminder(live.node), in_flight_id(memory, self.name, action.node_uuid))
