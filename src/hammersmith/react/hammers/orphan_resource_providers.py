"""orphan-resource-providers: Placement providers named after an Ironic node that no longer exists.

Nova's Ironic driver keeps one root provider per node, named by the node's UUID. A node deleted while its
nova-compute was down (or moved to another conductor group) leaves its provider behind, with inventory the
scheduler still counts, and possibly allocations of consumers long gone. Chameleon rewrote UUIDs in nova_api by SQL;
here the provider and its dead allocations are deleted through Placement's API, never a live instance's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from openstack.connection import Connection
from openstack.exceptions import raise_from_response

from hammersmith.cloud.connection import SiteConnection
from hammersmith.cloud.snapshot import IRONIC_MICROVERSION, Snapshot, server_date
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding
from hammersmith.detect.reservations import Reservations
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Live, ObjectHammer, hammer

#: 1.14: `in_tree`; 1.28: a consumer's allocations with its project and generation
PLACEMENT_MICROVERSION = "1.28"
#: providers Blazar makes for its own reservations (children of a node's provider, named blazar_<host>)
BLAZAR_PREFIX = "blazar_"
HOST = "OS-EXT-SRV-ATTR:hypervisor_hostname"


def node_uuid(name: str | None) -> str | None:
    """The Ironic node a provider is named after, or None: a name that is not a UUID is not guessed at."""
    try:
        return str(uuid.UUID(name or ""))
    except ValueError:
        return None


@hammer
class OrphanResourceProviders(ObjectHammer):
    """Delete a root Placement provider named after an Ironic node Ironic no longer has: first the allocations of
    consumers Nova no longer has, then the provider. A provider with child providers, with servers on its node, or
    with an allocation of a live server (or of a consumer also allocated elsewhere) is left to a human.

    Subjects carry, beside Placement's fields, the facts the judgement and the guard need: `node_exists`,
    `children`, `servers` (by the node UUID as Nova's hypervisor), and, read live before acting, `consumers`
    (consumer -> "gone", "server" or "elsewhere").
    """

    name = "orphan-resource-providers"
    subject = "resource-provider"
    reads = ("ironic", "placement")
    kept = ("name", "generation", "root_provider_uuid", "parent_provider_uuid", "consumers")

    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        providers = snapshot.data.get("resource_providers") or []
        nodes = {n["uuid"] for n in snapshot.nodes}
        servers = snapshot.data.get("servers")
        on_host: dict[str, list[str]] = {}
        for server in servers or []:
            on_host.setdefault(str(server.get(HOST)), []).append(server["id"])
        children: dict[str, list[str]] = {}
        for provider in providers:
            if parent := provider.get("parent_provider_uuid"):
                children.setdefault(parent, []).append(provider["uuid"])
        found = {}
        for provider in providers:
            facts = {
                "node_exists": provider.get("name") in nodes,
                "children": children.get(provider["uuid"], []),
                "servers": None if servers is None else on_host.get(str(provider.get("name")), []),
            }
            found[self.key(provider["uuid"])] = self.subject_of(
                {**provider, **facts}, provider["uuid"], provider.get("name")
            )
        return found

    def judge(self, subject: dict[str, Any], context: dict[str, Any], policy: Policy, now: datetime) -> str | None:
        name, ident = subject.get("name") or "", self.ident(subject["uuid"])
        node = node_uuid(name)
        if node is None or name.startswith(BLAZAR_PREFIX) or subject.get("node_exists"):
            return None
        if subject.get("parent_provider_uuid") or subject.get("root_provider_uuid", ident) != ident:
            return None  # not a compute node's root provider
        return f"Placement provider {ident} is named after Ironic node {node}, which Ironic no longer has"

    def since(self, subject: dict[str, Any]) -> str | None:
        return None  # Placement keeps no timestamps on providers

    def guard(
        self, subject: dict[str, Any], policy: Policy, now: datetime, conn: Connection, reservations: Reservations
    ) -> None:
        if subject.get("children"):
            raise safety.Refused(f"has child providers ({', '.join(subject['children'])}): Placement keeps the tree")
        if subject.get("servers"):
            raise safety.Refused(f"Nova has servers on node {subject.get('name')}: {', '.join(subject['servers'])}")
        consumers = subject.get("consumers") or {}
        if live := sorted(c for c, what in consumers.items() if what == "server"):
            raise safety.Refused(f"allocations of live servers: {', '.join(live)}")
        if elsewhere := sorted(c for c, what in consumers.items() if what == "elsewhere"):
            raise safety.Refused(f"consumers also allocated on other providers: {', '.join(elsewhere)}")

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        params = {"name": node.get("name")}
        return [Action(self.name, found.node_uuid, found.node_name, "delete", found.summary, params)]

    def read(self, site: SiteConnection, key: str) -> Live:
        """The provider now (404 raises NotFoundException), its tree, its consumers and whether each is a live
        server, and whether Ironic has the node."""
        ident = self.ident(key)
        placement, ironic = site.adapter("placement"), site.adapter("baremetal")
        if placement is None or ironic is None:
            raise RuntimeError("the catalog lacks Placement or Ironic")

        def get(path: str, **params: Any) -> Any:
            response = placement.get(path, params=params, microversion=PLACEMENT_MICROVERSION, raise_exc=False)
            raise_from_response(response)
            return response

        response = get(f"/resource_providers/{ident}")
        provider = response.json()
        tree = get("/resource_providers", in_tree=ident).json()["resource_providers"]
        allocations = get(f"/resource_providers/{ident}/allocations").json()["allocations"]
        node = node_uuid(provider.get("name"))
        exists = False
        if node is not None:
            found = ironic.get(f"/nodes/{node}", microversion=IRONIC_MICROVERSION, raise_exc=False)
            if found.status_code != 404:
                raise_from_response(found)
                exists = True
        servers = {}
        if allocations or (node is not None and not exists):  # every project's, as the snapshot lists them
            servers = {s.id: s.hypervisor_hostname for s in site.conn.compute.servers(details=True, all_projects=True)}
        consumers: dict[str, str] = {}
        for consumer in allocations:
            held = get(f"/allocations/{consumer}").json()["allocations"]
            consumers[consumer] = "server" if consumer in servers else "elsewhere" if set(held) - {ident} else "gone"
        facts = {
            "node_exists": exists,
            "children": [p["uuid"] for p in tree if p.get("parent_provider_uuid") == ident],
            "servers": sorted(s for s, host in servers.items() if node is not None and host == node),
            "consumers": consumers,
        }
        return Live(
            self.subject_of({**provider, **facts}, ident, provider.get("name")),
            [],
            server_date(response) or datetime.now(UTC),
        )

    def execute(self, conn: Connection, action: Action, live: Live, lease: safety.Lease) -> None:
        """The allocations of consumers checked gone, then the provider (Placement refuses, 409, if a new allocation
        came in meanwhile)."""
        for consumer, what in sorted(live.node.get("consumers", {}).items()):
            if what == "gone":
                response = conn.placement.delete(
                    f"/allocations/{consumer}", microversion=PLACEMENT_MICROVERSION, raise_exc=False
                )
                if response.status_code != 404:
                    raise_from_response(response)
        response = conn.placement.delete(
            f"/resource_providers/{self.ident(action.node_uuid)}", microversion=PLACEMENT_MICROVERSION, raise_exc=False
        )
        if response.status_code != 404:  # gone already: Nova's own clean-up got there first
            raise_from_response(response)
