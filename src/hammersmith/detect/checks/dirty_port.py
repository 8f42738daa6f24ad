"""Available nodes whose ports still carry a tenant VIF: the next deploy on them fails."""

from collections.abc import Iterator

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, check, finding


@check("dirty-port")
def dirty_port(snapshot: Snapshot, policy: Policy) -> Iterator[Finding]:
    """Available node with a stale `tenant_vif_port_id` on any of its ports (not only the first)."""
    for node in snapshot.nodes:
        if node["provision_state"] != "available" or node.get("instance_uuid"):
            continue
        stale = [
            p
            for p in snapshot.ports_by_node.get(node["uuid"], [])
            if (p.get("internal_info") or {}).get("tenant_vif_port_id")
        ]
        if stale:
            detail = ", ".join(f"{p['address']} -> VIF {p['internal_info']['tenant_vif_port_id']}" for p in stale)
            yield finding("dirty-port", node, f"{len(stale)} port(s) keep a stale tenant VIF", detail)
