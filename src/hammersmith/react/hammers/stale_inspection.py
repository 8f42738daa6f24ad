"""stale-inspection: hardware facts nobody has re-read for too long (disks die, DIMMs vanish)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from openstack.connection import Connection

from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, node_time
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Hammer, hammer


@hammer
class StaleInspection(Hammer):
    """Re-inspect an idle node not inspected for `inspect_after_days`, at most `inspect_per_sweep` per sweep,
    and return it where it was: `available` only if it was available (a node parked in `manageable` stays)."""

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

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        params = {"return_to": node["provision_state"]}
        return [Action(self.name, found.node_uuid, found.node_name, "inspect", found.summary, params)]

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        return bool(node["provision_state"] == action.params.get("return_to"))

    def execute(self, conn: Connection, action: Action, live: safety.Live, lease: safety.Lease) -> None:
        if live.node["provision_state"] == "available":
            safety.provision(conn, action.node_uuid, "manage")
            if safety.wait_settled(conn, action.node_uuid, lease, 60) is None:
                return  # not manageable yet: no inspection; the follow-up returns it, verification says ineffective
        safety.provision(conn, action.node_uuid, "inspect")

    def follow_up(self, conn: Connection, action: Action, node: dict[str, Any]) -> bool:
        """After the inspection (done or failed): back to manageable, then to available if it came from there."""
        if node["provision_state"] == "inspect failed":
            safety.provision(conn, action.node_uuid, "manage")
            return True
        if action.params.get("return_to") == "available" and node["provision_state"] == "manageable":
            safety.provision(conn, action.node_uuid, "provide")
            return True
        return False
