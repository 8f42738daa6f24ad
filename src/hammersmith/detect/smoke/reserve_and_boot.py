"""reserve-and-boot: what a user of a reservation testbed does: reserve a node through Blazar, boot on it in Nova.

The host is a reservable Blazar host whose Ironic node nobody uses or could be about to use (the
same rules as `deploy-node`: available, not in maintenance, not retired, no instance, no lessee,
no live or imminent lease, not left alone by the site's policy) and whose resource class has a
public flavor (`resources:CUSTOM_<CLASS>`). Everything is read in bulk first (Blazar's hosts,
allocations and leases, Ironic's available nodes, Nova's public flavors): no call per node.

The lease, named `hammersmith-smoke-<run id>`, reserves exactly that host (`physical:host`,
`$hypervisor_hostname` = the node's UUID, `$node_type` = its node type). Blazar moves a leased host
into an aggregate of its own whose availability zone is `blazar_<reservation id>`, so the server,
named like the lease, boots into that zone. The scenario checks that it landed on the reserved
node, deletes it, deletes the lease (which ends it) and waits until the node is available again.
Each of these is a timed step in the reports. After a failure or a timeout, the `finally` deletes
the server and the lease all the same; what it cannot remove fails the scenario as left behind.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from keystoneauth1 import adapter as ks_adapter

from hammersmith.cloud.snapshot import IRONIC_MICROVERSION
from hammersmith.config import Site
from hammersmith.detect import reservations
from hammersmith.detect.probes import checked
from hammersmith.detect.reservations import Reservations
from hammersmith.detect.smoke import LeftBehind, Skip, SmokeContext, log, scenario
from hammersmith.detect.smoke.deploy_node import eligible

#: flavors' extra specs in the listing (2.61) and `networks: none` (2.37)
NOVA_MICROVERSION = "2.61"
#: Blazar's default `blazar_az_prefix`: a reservation's aggregate is this zone's
AZ_PREFIX = "blazar_"
#: the admin-only server field that names the node a server runs on
HYPERVISOR = "OS-EXT-SRV-ATTR:hypervisor_hostname"
#: seconds a cleanup may take even after the scenario's deadline has passed (a node clean included)
CLEANUP_SECONDS = 300.0


@dataclass(frozen=True)
class Choice:
    """The Blazar host to reserve, its Ironic node, and the flavor that boots on it."""

    host: dict[str, Any]
    node: dict[str, Any]
    flavor: dict[str, Any]
    #: the image's ID, set once the host is chosen
    image: str = ""

    @property
    def label(self) -> str:
        return str(self.node.get("name") or self.node["uuid"])


def custom_class(resource_class: str) -> str:
    """Placement's name for an Ironic resource class, as Nova's Ironic driver normalises it."""
    return "CUSTOM_" + re.sub(r"[^A-Z0-9_]", "_", resource_class.upper())


def flavors_by_class(flavors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Placement resource class -> the first public flavor (by name) asking for one unit of it."""
    found: dict[str, dict[str, Any]] = {}
    for flavor in sorted(flavors, key=lambda f: f["name"]):
        if not flavor.get("os-flavor-access:is_public", True) or flavor.get("disabled"):
            continue
        for key, value in (flavor.get("extra_specs") or {}).items():
            if key.startswith("resources:CUSTOM_") and str(value) == "1":
                found.setdefault(key.removeprefix("resources:"), flavor)
    return found


def choose(
    hosts: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
    flavors: list[dict[str, Any]],
    site: Site,
    booked: Reservations,
    now: datetime,
) -> Choice | None:
    """The first reservable host (by node name) whose node is free and bootable with a public flavor, or None."""
    free = {n["uuid"]: n for n in nodes if eligible(n, site, booked, now)}
    by_class = flavors_by_class(flavors)
    choices = []
    for host in hosts:
        node = free.get(host.get("hypervisor_hostname", ""))
        if node is None or str(host.get("reservable", True)).lower() == "false":
            continue
        flavor = by_class.get(custom_class(node.get("resource_class") or ""))
        if flavor is not None:
            choices.append(Choice(host, node, flavor))
    return min(choices, key=lambda c: c.label, default=None)


@dataclass
class Trip:
    """The services and what this run created in them, so that the `finally` removes exactly that."""

    ctx: SmokeContext
    nova: ks_adapter.Adapter
    blazar: ks_adapter.Adapter
    ironic: ks_adapter.Adapter
    lease: str | None = None
    server: str | None = None

    def pick(self) -> Choice:
        """Hosts, allocations, leases, available nodes and flavors, each read once; the host to reserve."""
        hosts = checked(self.blazar.get("/os-hosts")).json()["hosts"]
        booked = reservations.live(self.blazar)
        query = "/nodes?provision_state=available&maintenance=false&associated=false&detail=true"
        nodes = checked(self.ironic.get(query, microversion=IRONIC_MICROVERSION)).json()["nodes"]
        path = "/flavors/detail?is_public=true"
        flavors = checked(self.nova.get(path, microversion=NOVA_MICROVERSION)).json()["flavors"]
        choice = choose(hosts, nodes, flavors, self.ctx.site, booked, datetime.now(UTC))
        if choice is None:
            raise RuntimeError(
                "no reservable Blazar host whose Ironic node is free (available, not in maintenance, not retired, "
                "no instance, no lease) and has a public flavor for its resource class"
            )
        return replace(choice, image=self.image())

    def reserve(self, choice: Choice) -> str:
        """A lease on exactly this host, from now to the deadline (+ margin), once ACTIVE: its reservation's ID."""
        end = datetime.now(UTC) + timedelta(seconds=self.ctx.remaining() + 600)
        node_type = choice.host.get("node_type")
        reservation = {
            "resource_type": "physical:host",
            "min": 1,
            "max": 1,
            "hypervisor_properties": json.dumps(["=", "$hypervisor_hostname", choice.node["uuid"]]),
            "resource_properties": json.dumps(["=", "$node_type", node_type]) if node_type else "",
        }
        body = {
            "name": self.ctx.tag,
            "start_date": "now",
            "end_date": end.strftime("%Y-%m-%d %H:%M"),
            "reservations": [reservation],
            "events": [],
        }
        self.lease = checked(self.blazar.post("/leases", json=body)).json()["lease"]["id"]
        lease: dict[str, Any] = {}

        def active() -> bool:
            nonlocal lease
            lease = checked(self.blazar.get(f"/leases/{self.lease}")).json()["lease"]
            if lease["status"] == "ERROR":
                raise RuntimeError(f"Blazar lease {self.ctx.tag} on node {choice.label} went to ERROR")
            return lease["status"] == "ACTIVE"

        self.ctx.wait(f"waiting for Blazar lease {self.ctx.tag} to start", active, interval=2.0)
        return str(lease["reservations"][0]["id"])

    def boot(self, choice: Choice, reservation: str) -> dict[str, Any]:
        """A server in the reservation's availability zone, with the node's flavor and a public image, once ACTIVE."""
        body = {
            "server": {
                "name": self.ctx.tag,
                "flavorRef": choice.flavor["id"],
                "imageRef": choice.image,
                "availability_zone": f"{AZ_PREFIX}{reservation}",
                "networks": "none",
            }
        }
        created = checked(self.nova.post("/servers", json=body, microversion=NOVA_MICROVERSION)).json()
        self.server = created["server"]["id"]
        server: dict[str, Any] = {}

        def active() -> bool:
            nonlocal server
            server = checked(self.nova.get(f"/servers/{self.server}", microversion=NOVA_MICROVERSION)).json()["server"]
            if server["status"] == "ERROR":
                fault = (server.get("fault") or {}).get("message", "no fault given")
                raise RuntimeError(f"server {self.ctx.tag} went to ERROR: {fault}")
            return server["status"] == "ACTIVE"

        self.ctx.wait(f"booting server {self.ctx.tag} on node {choice.label}", active, interval=1.0)
        return server

    def image(self) -> str:
        """The first active public image by name (Glance's listing; the `image` service must be in the catalog)."""
        glance = self.ctx.connection.adapter("image")
        if glance is None:
            raise RuntimeError("the catalog has no image (Glance) service to boot from")
        path = "/images?visibility=public&status=active&sort=name:asc&limit=1"  # the adapter is at /v2
        images = checked(glance.get(path)).json()["images"]
        if not images:
            raise RuntimeError("Glance has no active public image to boot from")
        return str(images[0]["id"])

    def landed(self, server: dict[str, Any], choice: Choice) -> None:
        """The server runs on the reserved node: Nova's hypervisor (admins see it) or else Ironic's instance."""
        uid = choice.node["uuid"]
        where = server.get(HYPERVISOR)
        if where is None:
            node = checked(self.ironic.get(f"/nodes/{uid}", microversion=IRONIC_MICROVERSION)).json()
            where = uid if node.get("instance_uuid") == server["id"] else f"not node {uid}"
        if where != uid:
            raise RuntimeError(f"server {self.ctx.tag} landed on {where}, not on the reserved node {choice.label}")

    def delete_server(self, limit: float | None = None) -> None:
        """Delete the server and wait until Nova no longer lists it (404)."""
        response = self.nova.delete(f"/servers/{self.server}", raise_exc=False)
        if response.status_code != 404:
            checked(response)

        def gone() -> bool:
            response = self.nova.get(f"/servers/{self.server}", raise_exc=False)
            if response.status_code == 404:
                return True
            if checked(response).json()["server"]["status"] == "ERROR":
                raise RuntimeError(f"server {self.ctx.tag} went to ERROR while being deleted")
            return False

        self.ctx.wait(f"deleting server {self.ctx.tag}", gone, interval=1.0, limit=limit)
        self.server = None

    def end_lease(self, limit: float | None = None) -> None:
        """Delete the lease (Blazar ends it first: the host goes back to the free pool) and wait until it is gone."""
        response = self.blazar.delete(f"/leases/{self.lease}", raise_exc=False)
        if response.status_code != 404:
            checked(response)
        gone = lambda: self.blazar.get(f"/leases/{self.lease}", raise_exc=False).status_code == 404  # noqa: E731
        self.ctx.wait(f"ending Blazar lease {self.ctx.tag}", gone, interval=2.0, limit=limit)
        self.lease = None

    def node_available(self, choice: Choice, limit: float | None = None) -> None:
        """Wait until Ironic has the node back: available (after its clean), no instance."""
        uid = choice.node["uuid"]
        path = f"/nodes/{uid}"

        def back() -> bool:
            node = checked(self.ironic.get(path, microversion=IRONIC_MICROVERSION)).json()
            if node["provision_state"].endswith("failed") or node["provision_state"] == "error":
                raise RuntimeError(f"node {choice.label} went to {node['provision_state']}: {node.get('last_error')}")
            return node["provision_state"] == "available" and not node.get("instance_uuid")

        self.ctx.wait(f"node {choice.label} coming back to available", back, interval=1.0, limit=limit)

    def cleanup(self, choice: Choice | None) -> list[str]:
        """Delete what is still there (the server, then the lease), then wait for the node; what could not be."""
        removals = [("server", self.delete_server)] if self.server else []
        removals += [("Blazar lease", self.end_lease)] if self.lease else []
        problems = []
        for what, remove in removals:
            try:
                remove(CLEANUP_SECONDS)
            except Exception as exc:
                log.critical("site %s: SMOKE LEFT %s %s BEHIND: %s", self.ctx.name, what.upper(), self.ctx.tag, exc)
                problems.append(f"{what} {self.ctx.tag} left behind: {exc}")
        if removals and choice is not None and not problems:
            try:
                self.node_available(choice, CLEANUP_SECONDS)
            except Exception as exc:
                log.critical("site %s: SMOKE LEFT NODE %s BEHIND: %s", self.ctx.name, choice.label, exc)
                problems.append(f"node {choice.label} not back to available: {exc}")
        return problems


@scenario("reserve-and-boot", set="expensive")
def reserve_and_boot(ctx: SmokeContext) -> None:
    """Reserve a free node through Blazar, boot a server on it through Nova, delete both (needs Nova and Blazar)."""
    nova, blazar = ctx.connection.adapter("compute"), ctx.connection.adapter("reservation")
    if nova is None or blazar is None:
        absent = [name for name, client in (("compute (Nova)", nova), ("reservation (Blazar)", blazar)) if not client]
        raise Skip(f"the catalog has no {' and no '.join(absent)} service")
    ironic = ctx.connection.adapter("baremetal")
    if ironic is None:
        raise RuntimeError("the catalog has no baremetal (Ironic) endpoint")
    trip = Trip(ctx, nova, blazar, ironic)
    choice: Choice | None = None
    failure: BaseException | None = None
    try:
        choice = trip.pick()
        with ctx.step("lease-active"):
            reservation = trip.reserve(choice)
        with ctx.step("boot-active"):
            server = trip.boot(choice, reservation)
        trip.landed(server, choice)
        with ctx.step("delete"):
            trip.delete_server()
        with ctx.step("lease-end"):
            trip.end_lease()
            trip.node_available(choice)
        ctx.notes.append(f"booted {ctx.tag} on {choice.label} in a Blazar lease, deleted both")
    except BaseException as exc:
        failure = exc
        raise
    finally:
        problems = trip.cleanup(choice)
        if problems:
            after = f" (after: {failure})" if failure else ""
            raise LeftBehind("; ".join(problems) + after)
