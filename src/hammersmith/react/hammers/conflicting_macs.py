"""conflicting-macs: a Neutron port on a provisioning or cleaning network holding the MAC of a node's Ironic port,
left behind by a deploy or clean that died half-way. The node's next deploy or clean fails: Neutron refuses a second
port with that MAC on the network (or DHCP answers the wrong one).

The networks come from the site's policy (`provisioning_networks`); with none configured the hammer finds nothing.
Chameleon's version needed an option its schedule never passed, so it exited with a usage error every day.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from openstack.connection import Connection

from hammersmith.cloud.connection import SiteConnection
from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, finding
from hammersmith.detect.handsoff import TRANSIENT_STATES
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Hammer, Live, hammer

#: the `internal_info` keys through which Ironic names the Neutron ports it uses for a node
VIF_KEYS = (
    "tenant_vif_port_id",
    "provisioning_vif_port_id",
    "cleaning_vif_port_id",
    "rescuing_vif_port_id",
    "inspection_vif_port_id",
    "servicing_vif_port_id",
)


def in_use(node: dict[str, Any], ports: list[dict[str, Any]]) -> set[str]:
    """The Neutron ports Ironic records for the node: they are deployed to it, not in its way."""
    return {vif for p in ports for key in VIF_KEYS if (vif := (p.get("internal_info") or {}).get(key))}


def conflicts(
    node: dict[str, Any], ports: list[dict[str, Any]], neutron_ports: list[dict[str, Any]], networks: set[str]
) -> list[dict[str, Any]]:
    """Neutron ports on `networks` with one of the node's MACs that the node is not deployed to. A port Ironic made
    for a node it is working on (device_id = the node) is its own while the work lasts."""
    macs = {p["address"].lower() for p in ports if p.get("address")}
    used = in_use(node, ports)
    busy = node["provision_state"] in TRANSIENT_STATES
    return [
        p
        for p in neutron_ports
        if p.get("network_id") in networks
        and (p.get("mac_address") or "").lower() in macs
        and p["id"] not in used
        and not (busy and p.get("device_id") == node["uuid"])
    ]


def summary(found: list[dict[str, Any]]) -> str | None:
    if not found:
        return None
    held = ", ".join(f"{p['id']} ({p.get('mac_address')})" for p in sorted(found, key=lambda p: p["id"]))
    return f"Neutron port(s) on a provisioning network hold its MAC: {held}"


def network_ids(wanted: list[str], networks: list[dict[str, Any]]) -> set[str]:
    """The configured networks' IDs: each entry is a network's ID or its name."""
    return {n["id"] for n in networks if n["id"] in wanted or n.get("name") in wanted}


@hammer
class ConflictingMacs(Hammer):
    """Delete the Neutron ports that were checked to hold a node's MAC on a provisioning network without Ironic
    using them; the node's own and a deployed instance's ports are never touched."""

    name = "conflicting-macs"
    reads = ("ironic", "neutron")
    listings = ("networks",)

    def detect(self, snapshot: Snapshot, policy: Policy) -> list[Finding]:
        networks = network_ids(policy.provisioning_networks, snapshot.data.get("networks") or [])
        by_mac: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for port in snapshot.data.get("network_ports") or []:
            if port.get("network_id") in networks:
                by_mac[(port.get("mac_address") or "").lower()].append(port)
        found = []
        for node in snapshot.nodes:
            ports = snapshot.ports_by_node.get(node["uuid"], [])
            candidates = [p for port in ports for p in by_mac.get((port.get("address") or "").lower(), [])]
            held = conflicts(node, ports, candidates, networks)
            if text := summary(held):
                found.append(finding(self.name, node, text, " ".join(sorted(p["id"] for p in held))))
        return found

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        params = {"ports": found.detail.split()}  # the ports checked: execute deletes no other
        return [Action(self.name, found.node_uuid, found.node_name, "delete-ports", found.summary, params)]

    def read(self, site: SiteConnection, key: str) -> Live:
        """The node and its ports, and the Neutron ports that carry its MACs now (one query per Ironic port)."""
        live = safety.live(site.conn, key)
        wanted = site.site.policy.provisioning_networks
        networks = {n.id for ref in wanted if (n := site.conn.network.find_network(ref))}
        holders = [
            port.to_dict(computed=False)
            for p in live.ports
            if p.get("address")
            for port in site.conn.network.ports(mac_address=p["address"])
        ]
        return Live(live.node, live.ports, live.now, {"conflicts": conflicts(live.node, live.ports, holders, networks)})

    def matches_live(self, live: Live, policy: Policy) -> str | None:
        return summary(live.context.get("conflicts") or [])

    def execute(self, conn: Connection, action: Action, live: Live, lease: safety.Lease) -> None:
        now = {p["id"] for p in live.context.get("conflicts") or []}
        for port in sorted(now & set(action.params.get("ports", []))):
            conn.network.delete_port(port, ignore_missing=True)
