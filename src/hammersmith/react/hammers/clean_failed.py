"""clean-failed: nodes whose cleaning failed, retried through manage -> provide."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openstack.connection import Connection

from hammersmith.config import Policy
from hammersmith.detect.checks import Finding
from hammersmith.react.hammers import Action, Hammer, hammer


@hammer
class CleanFailed(Hammer):
    """Retry cleaning of a node in `clean failed`: leave Ironic's maintenance, manage, provide."""

    name = "clean-failed"
    fault = "clean failure"

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        return "cleaning failed" if node["provision_state"] == "clean failed" else None

    def plan(self, found: Finding, policy: Policy) -> list[Action]:
        return [Action(self.name, found.node_uuid, found.node_name, "manage-provide", found.summary)]

    def execute(self, conn: Connection, action: Action) -> None:
        node = conn.baremetal.get_node(action.node_uuid)
        if node.is_maintenance:  # Ironic's own (fault "clean failure"); a human's never gets this far
            conn.baremetal.unset_node_maintenance(action.node_uuid)
        conn.baremetal.set_node_provision_state(action.node_uuid, "manage", wait=True, timeout=60)
        conn.baremetal.set_node_provision_state(action.node_uuid, "provide", wait=False)
