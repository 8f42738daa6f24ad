"""clean-failed: nodes whose cleaning failed, returned to where the cleaning was taking them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openstack.connection import Connection

from hammersmith.config import Policy
from hammersmith.detect.checks import Finding
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Hammer, hammer


@hammer
class CleanFailed(Hammer):
    """Retry a failed clean: leave Ironic's own maintenance, manage, and provide only if the clean was taking
    the node to `available` (a failed manual clean goes back to `manageable`, where the operator had it)."""

    name = "clean-failed"
    fault = "clean failure"

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        return "cleaning failed" if node["provision_state"] == "clean failed" else None

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        automated = node.get("target_provision_state") == "available"
        params = {
            "return_to": "available" if automated else "manageable",
            "target_provision_state": node.get("target_provision_state"),
            "maintenance_reason": node.get("maintenance_reason") if node.get("maintenance") else None,
        }
        kind = "manage-provide" if automated else "manage"
        return [Action(self.name, found.node_uuid, found.node_name, kind, found.summary, params)]

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        """The same failed clean: same target, and the same maintenance (Ironic's reason, or none)."""
        reason = node.get("maintenance_reason") if node.get("maintenance") else None
        return (node.get("target_provision_state"), reason) == (
            action.params.get("target_provision_state"),
            action.params.get("maintenance_reason"),
        )

    def execute(self, conn: Connection, action: Action, live: safety.Live, lease: safety.Lease) -> None:
        if live.node.get("maintenance"):  # Ironic's own, re-checked under the lock (a human's never gets here)
            safety.call(conn, "delete", f"/nodes/{action.node_uuid}/maintenance")
        safety.provision(conn, action.node_uuid, "manage")

    def follow_up(self, conn: Connection, action: Action, node: dict[str, Any]) -> bool:
        if action.params.get("return_to") == "available" and node["provision_state"] == "manageable":
            safety.provision(conn, action.node_uuid, "provide")
            return True
        return False
