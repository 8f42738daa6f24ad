"""list-nodes: list Ironic's nodes, as `openstack baremetal node list` does."""

from __future__ import annotations

from hammersmith.cloud.snapshot import IRONIC_MICROVERSION
from hammersmith.detect.probes import checked
from hammersmith.detect.smoke import SmokeContext, scenario


@scenario("list-nodes", set="cheap")
def list_nodes(ctx: SmokeContext) -> None:
    """List one page of nodes and check the answer is a node list."""
    client = ctx.connection.adapter("baremetal")
    if client is None:
        raise RuntimeError("the catalog has no baremetal (Ironic) endpoint")
    body = checked(client.get("/nodes?limit=100", microversion=IRONIC_MICROVERSION)).json()
    if not isinstance(body.get("nodes"), list):
        raise RuntimeError(f"Ironic's node list has no 'nodes' list: {str(body)[:200]}")
