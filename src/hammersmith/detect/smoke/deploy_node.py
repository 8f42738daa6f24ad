"""deploy-node: take an available node, deploy it through Ironic, wait until active, tear it down.

The node is picked only if nobody could be using it: `available`, not in maintenance, no
instance, no allocation, no lessee, not locked by a conductor, not left alone by the site's
policy (and of `smoke.resource_class` when set). It is then *claimed* by setting its
`instance_uuid` -- Ironic refuses that (409) if anyone else claimed it first, which is how Nova
claims nodes too -- so a race with a user's launch makes the scenario pick again, never steal.

When Blazar is in the catalog the node is first reserved through a lease named
`hammersmith-smoke-<run id>` (as users must on a Blazar site), and the lease is deleted after:
a `physical:host` reservation on the node's `hypervisor_hostname`, which Chameleon (and the
testbed's full tier, where the tests run this path against Blazar 18) sets to the Ironic UUID.

Whatever happens, the `finally` tears the node down, waits for `available`, removes the claim
and the marker in `extra`, and deletes the lease; a node not back to `available` is logged at
CRITICAL and fails the scenario with the node's name and state.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from keystoneauth1 import adapter as ks_adapter

from hammersmith.cloud.snapshot import IRONIC_MICROVERSION
from hammersmith.config import Site
from hammersmith.detect import reservations
from hammersmith.detect.handsoff import hands_off
from hammersmith.detect.probes import checked
from hammersmith.detect.reservations import Reservations
from hammersmith.detect.smoke import LeftBehind, SmokeContext, log, scenario

#: where a node may be torn down from after the deploy started
UNDEPLOYABLE = frozenset({"active", "deploy failed", "wait call-back", "error"})
#: states no conductor is moving the node out of by itself
SETTLED = UNDEPLOYABLE | {"available", "clean failed", "manageable", "enroll"}
MARKER = "hammersmith_smoke"
ATTEMPTS = 3  # picks, when another client claims the node first


class Ironic:
    """The few raw Ironic calls the scenario needs (no SDK retries: a 409 is an answer here)."""

    def __init__(self, client: ks_adapter.Adapter) -> None:
        self.client = client

    def get(self, node: str) -> dict[str, Any]:
        return checked(self.client.get(f"/nodes/{node}", microversion=IRONIC_MICROVERSION)).json()

    def candidates(self, resource_class: str | None) -> list[dict[str, Any]]:
        query = "/nodes?provision_state=available&maintenance=false&associated=false&detail=true"
        if resource_class:
            query += f"&resource_class={resource_class}"
        return checked(self.client.get(query, microversion=IRONIC_MICROVERSION)).json()["nodes"]

    def patch(self, node: str, ops: list[dict[str, Any]], check: bool = True) -> Any:
        response = self.client.patch(f"/nodes/{node}", json=ops, microversion=IRONIC_MICROVERSION)
        return checked(response) if check else response

    def provision(self, node: str, target: str) -> None:
        path = f"/nodes/{node}/states/provision"
        checked(self.client.put(path, json={"target": target}, microversion=IRONIC_MICROVERSION))


def eligible(node: dict[str, Any], site: Site, booked: Reservations, now: datetime) -> bool:
    """Only a node nobody uses or could be about to use (a Blazar lease on it, or starting soon, included)."""
    return (
        node.get("provision_state") == "available"
        and not node.get("maintenance")
        and not node.get("retired")
        and not node.get("instance_uuid")
        and not node.get("allocation_uuid")
        and not node.get("lessee")
        and not node.get("reservation")
        and not (node.get("instance_info") or {})
        and (site.smoke.resource_class is None or node.get("resource_class") == site.smoke.resource_class)
        and hands_off(node, site.policy, reservations=booked, now=now) is None
    )


def pick(ironic: Ironic, ctx: SmokeContext, claim: str) -> dict[str, Any]:
    """Claim an eligible node (instance_uuid = claim), trying the next one if another client wins the race."""
    tried: set[str] = set()
    booked = reservations.live(ctx.connection.adapter("reservation"))
    for _ in range(ATTEMPTS):
        free = sorted(
            (
                n
                for n in ironic.candidates(ctx.site.smoke.resource_class)
                if eligible(n, ctx.site, booked, datetime.now(UTC)) and n["uuid"] not in tried
            ),
            key=lambda n: n.get("name") or n["uuid"],
        )
        if not free:
            break
        node = free[0]
        tried.add(node["uuid"])
        ops = [
            {"op": "add", "path": "/instance_uuid", "value": claim},
            {"op": "add", "path": f"/extra/{MARKER}", "value": ctx.tag},
        ]
        response = ironic.patch(node["uuid"], ops, check=False)
        if response.ok:
            return response.json()
        if response.status_code != 409:
            checked(response)
    rc = ctx.site.smoke.resource_class
    raise RuntimeError(f"no available, unclaimed node{f' of resource class {rc}' if rc else ''} to deploy")


@scenario("deploy-node", set="expensive")
def deploy_node(ctx: SmokeContext) -> None:
    """Deploy an available node through Ironic (reserved through Blazar if present), then tear it down."""
    client = ctx.connection.adapter("baremetal")
    if client is None:
        raise RuntimeError("the catalog has no baremetal (Ironic) endpoint")
    ironic = Ironic(client)
    blazar = ctx.connection.adapter("reservation")
    claim = str(uuid.uuid4())
    node: dict[str, Any] | None = None
    lease: str | None = None
    failure: BaseException | None = None
    try:
        node = pick(ironic, ctx, claim)
        if blazar is not None:
            lease = reserve(blazar, ctx, node["uuid"])
        ironic.patch(
            node["uuid"],
            [
                {
                    "op": "add",
                    "path": "/instance_info",
                    "value": {"image_source": ctx.site.smoke.image_source, "display_name": ctx.tag},
                }
            ],
        )
        ironic.provision(node["uuid"], "active")
        wait_state(ironic, ctx, node["uuid"], "active", "deploying")
        ironic.provision(node["uuid"], "deleted")
        wait_state(ironic, ctx, node["uuid"], "available", "tearing down")
        ctx.notes.append(f"deployed {node.get('name') or node['uuid']} to active and back to available")
    except BaseException as exc:
        failure = exc
        raise
    finally:
        problems = []
        if node is not None:
            problems.extend(release(ironic, ctx, node, claim))
        if lease is not None and blazar is not None:
            problems.extend(delete_lease(blazar, lease))
        if problems:
            after = f" (after: {failure})" if failure else ""
            raise LeftBehind("; ".join(problems) + after)


def wait_state(
    ironic: Ironic, ctx: SmokeContext, node: str, target: str, doing: str, limit: float | None = None
) -> None:
    """Poll the node until `target`; a failed state ends the wait at once with Ironic's last_error."""

    def reached() -> bool:
        current = ironic.get(node)
        state = current["provision_state"]
        if state != target and (state.endswith("failed") or state == "error"):
            raise RuntimeError(f"node {current.get('name') or node} went to {state}: {current.get('last_error')}")
        return state == target

    ctx.wait(f"{doing} node {node} (waiting for {target})", reached, limit=limit)


def release(ironic: Ironic, ctx: SmokeContext, node: dict[str, Any], claim: str) -> list[str]:
    """Tear the node down if it went anywhere, wait for `available`, drop our claim; what is still wrong."""
    uid, name = node["uuid"], node.get("name") or node["uuid"]
    limit = max(ctx.site.smoke.timeout_seconds, 60.0)  # cleanup gets its own time, even after a timeout
    try:
        # a deploy or tear down still under way is let finish first: Ironic refuses to change course mid-way
        ctx.wait(f"node {name} settling", lambda: ironic.get(uid)["provision_state"] in SETTLED, limit=limit)
        if ironic.get(uid)["provision_state"] in UNDEPLOYABLE:
            ironic.provision(uid, "deleted")
        wait_state(ironic, ctx, uid, "available", "cleaning up", limit=limit)
        current = ironic.get(uid)
        ops = [{"op": "remove", "path": f"/extra/{MARKER}"}]
        if current.get("instance_uuid") == claim:
            ops.append({"op": "remove", "path": "/instance_uuid"})
        if current.get("instance_info"):
            ops.append({"op": "replace", "path": "/instance_info", "value": {}})
        ironic.patch(uid, ops)
        current = ironic.get(uid)
    except Exception as exc:
        log.critical("site %s: SMOKE LEFT NODE %s (%s) BEHIND: cleanup failed: %s", ctx.name, name, uid, exc)
        return [f"NODE {name} LEFT BEHIND: cleanup failed: {exc}"]
    if current["provision_state"] != "available" or current.get("instance_uuid"):
        log.critical(
            "site %s: SMOKE LEFT NODE %s (%s) IN %s (instance %s)",
            ctx.name,
            name,
            uid,
            current["provision_state"],
            current.get("instance_uuid"),
        )
        return [f"NODE {name} LEFT IN {current['provision_state']}, not available"]
    return []


def reserve(blazar: ks_adapter.Adapter, ctx: SmokeContext, node_uuid: str) -> str:
    """A Blazar lease on exactly this node, from now until the scenario's deadline (+ margin); waits for ACTIVE.

    Blazar names Ironic nodes by UUID in `hypervisor_hostname` (Nova's Ironic driver reports them so).
    """
    now = datetime.now(UTC)
    end = now + timedelta(seconds=ctx.remaining() + 600)
    body = {
        "name": ctx.tag,
        "start_date": "now",
        "end_date": end.strftime("%Y-%m-%d %H:%M"),
        "reservations": [
            {
                "resource_type": "physical:host",
                "min": 1,
                "max": 1,
                "hypervisor_properties": json.dumps(["=", "$hypervisor_hostname", node_uuid]),
                "resource_properties": "",
            }
        ],
        "events": [],
    }
    lease = checked(blazar.post("/leases", json=body)).json()["lease"]
    lease_id = lease["id"]

    def active() -> bool:
        status = checked(blazar.get(f"/leases/{lease_id}")).json()["lease"].get("status")
        if status == "ERROR":
            raise RuntimeError(f"Blazar lease {lease_id} for node {node_uuid} went to ERROR")
        return status == "ACTIVE"

    try:
        ctx.wait(f"waiting for Blazar lease {lease_id} to start", active, interval=2.0)
    except BaseException:
        delete_lease(blazar, lease_id)
        raise
    return lease_id


def delete_lease(blazar: ks_adapter.Adapter, lease_id: str) -> list[str]:
    try:
        response = blazar.delete(f"/leases/{lease_id}")
    except Exception as exc:
        log.critical("SMOKE LEFT BLAZAR LEASE %s BEHIND: %s", lease_id, exc)
        return [f"Blazar lease {lease_id} left behind: {exc}"]
    if response.status_code not in (200, 202, 204, 404):
        log.critical("SMOKE LEFT BLAZAR LEASE %s BEHIND: HTTP %s", lease_id, response.status_code)
        return [f"Blazar lease {lease_id} left behind: HTTP {response.status_code}"]
    return []
