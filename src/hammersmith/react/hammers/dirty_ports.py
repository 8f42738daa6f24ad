"""dirty-ports: available nodes whose ports still carry a tenant VIF; the next deploy on them fails."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openstack.connection import Connection

from hammersmith.cloud.snapshot import IRONIC_MICROVERSION
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Hammer, hammer


def stale_vifs(ports: list[dict[str, Any]]) -> list[str]:
    return sorted({vif for p in ports if (vif := (p.get("internal_info") or {}).get("tenant_vif_port_id"))})


@hammer
class DirtyPorts(Hammer):
    """Detach stale tenant VIFs from every port of an available node, through Ironic's VIF API."""

    name = "dirty-ports"

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        if node["provision_state"] != "available" or node.get("instance_uuid"):
            return None
        vifs = stale_vifs(ports)
        return f"{len(vifs)} stale tenant VIF(s) on its ports: {', '.join(vifs)}" if vifs else None

    def plan(self, found: Finding, policy: Policy) -> list[Action]:
        return [Action(self.name, found.node_uuid, found.node_name, "vif-detach", found.summary)]

    def execute(self, conn: Connection, action: Action) -> None:
        """`DELETE /v1/nodes/{node}/vifs/{vif}` for each VIF, read from the live ports (all, not the first)."""
        for vif in stale_vifs(safety.live_ports(conn, action.node_uuid)):
            response = conn.baremetal.delete(
                f"/nodes/{action.node_uuid}/vifs/{vif}", microversion=IRONIC_MICROVERSION, raise_exc=False
            )
            if response.status_code >= 300:
                raise RuntimeError(f"VIF detach of {vif} refused: HTTP {response.status_code} {response.text[:300]}")
        left = stale_vifs(safety.live_ports(conn, action.node_uuid))
        if left:  # e.g. the `noop` network interface accepts a detach and forgets nothing
            raise RuntimeError(f"Ironic still records VIF(s) {', '.join(left)} after detach")
