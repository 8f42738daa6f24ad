"""dirty-ports: available nodes whose ports still carry a tenant VIF; the next deploy on them fails."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from openstack.connection import Connection

from hammersmith.config import Policy
from hammersmith.detect.checks import Finding
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Hammer, hammer

#: what a re-created port keeps of the old one (Ironic generates the rest)
PORT_FIELDS = (
    "address",
    "pxe_enabled",
    "physical_network",
    "local_link_connection",
    "extra",
    "is_smartnic",
    "portgroup_uuid",
    "name",  # shown from API 1.88; absent (so not copied) at the snapshot's microversion
)


def stale_vifs(ports: list[dict[str, Any]]) -> list[str]:
    return sorted({vif for p in ports if (vif := (p.get("internal_info") or {}).get("tenant_vif_port_id"))})


@hammer
class DirtyPorts(Hammer):
    """Detach the stale tenant VIFs that were checked, through Ironic's VIF API; where the `noop` network interface
    accepts the detach but forgets nothing, re-create the port with the same attributes instead."""

    name = "dirty-ports"

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        if node["provision_state"] != "available" or node.get("instance_uuid") or node.get("allocation_uuid"):
            return None
        vifs = stale_vifs(ports)
        return f"{len(vifs)} stale tenant VIF(s) on its ports: {', '.join(vifs)}" if vifs else None

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        params = {"vifs": stale_vifs(ports), "network_interface": node.get("network_interface")}
        return [Action(self.name, found.node_uuid, found.node_name, "vif-detach", found.summary, params)]

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        """Only VIFs checked as stale are touched, and only while no instance or allocation has claimed the node."""
        claimed = node.get("instance_uuid") or node.get("allocation_uuid")
        return not claimed and bool(set(action.params.get("vifs", [])) & set(stale_vifs(ports)))

    def execute(self, conn: Connection, action: Action, live: safety.Live, lease: safety.Lease) -> None:
        checked = set(action.params.get("vifs", []))
        for vif in sorted(checked & set(stale_vifs(live.ports))):
            safety.call(conn, "delete", f"/nodes/{action.node_uuid}/vifs/{vif}")
        if live.node.get("network_interface") != "noop":
            return
        # `noop` answers 204 to the detach and keeps tenant_vif_port_id: the one API-only repair is a new port
        for port in safety.live_ports(conn, action.node_uuid):
            if (port.get("internal_info") or {}).get("tenant_vif_port_id") not in checked:
                continue
            body = {**{k: port[k] for k in PORT_FIELDS if port.get(k) is not None}, "node_uuid": action.node_uuid}
            safety.call(conn, "delete", f"/ports/{port['uuid']}")
            try:
                safety.call(conn, "post", "/ports", body)
            except Exception as exc:  # the ledger must hold what a human needs to restore the port
                raise RuntimeError(
                    f"port {port['uuid']} deleted but not re-created ({safety.short_error(exc)}); "
                    f"restore it with: {json.dumps(body)}"
                ) from exc
