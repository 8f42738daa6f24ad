"""stale-inspection: hardware facts nobody has re-read for too long (disks die, DIMMs vanish)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from openstack.connection import Connection

from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, node_time
from hammersmith.react.hammers import Action, Hammer, hammer


@hammer
class StaleInspection(Hammer):
    """Re-inspect an idle node not inspected for `inspect_after_days`, at most `inspect_per_sweep` per sweep."""

    name = "stale-inspection"

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        if node["provision_state"] not in ("available", "manageable") or node.get("maintenance"):
            return None
        finished = node_time(node.get("inspection_finished_at"))
        if finished and now - finished <= timedelta(days=policy.inspect_after_days):
            return None
        return "never inspected" if not finished else f"last inspected {(now - finished).days} days ago"

    def per_sweep(self, policy: Policy) -> int:
        return min(policy.rate.per_sweep, policy.inspect_per_sweep)

    def plan(self, found: Finding, policy: Policy) -> list[Action]:
        return [Action(self.name, found.node_uuid, found.node_name, "inspect", found.summary)]

    def execute(self, conn: Connection, action: Action) -> None:
        bm = conn.baremetal
        was_available = bm.get_node(action.node_uuid).provision_state == "available"
        if was_available:
            bm.set_node_provision_state(action.node_uuid, "manage", wait=True, timeout=60)
        bm.set_node_provision_state(action.node_uuid, "inspect", wait=True, timeout=300)  # within the lock TTL
        if was_available:
            bm.set_node_provision_state(action.node_uuid, "provide", wait=False)
