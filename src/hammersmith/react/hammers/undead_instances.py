"""undead-instances: nodes deployed for an instance Nova no longer has, and Nova servers in ERROR on a node Ironic
already cleaned.

The first happens when Nova deletes a server while the node's nova-compute is down (a "local delete"): Nova forgets
the instance, Ironic keeps the node deployed for it, and the node is lost to the pool. The second is the reverse
report (no action: the server is the user's to delete). Chameleon's version crashed while parsing its arguments on
every run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openstack.connection import Connection

from hammersmith.cloud.connection import SiteConnection
from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, finding
from hammersmith.detect.reservations import Reservations
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Hammer, Live, hammer

HYPERVISOR = "OS-EXT-SRV-ATTR:hypervisor_hostname"
#: states an undead node is undeployed from (Ironic's `deleted` verb); elsewhere only the stale field is removed
UNDEPLOYABLE = frozenset({"active", "error", "deploy failed"})
#: states in which Ironic has wiped the node: a server still bound to it is a record of nothing
CLEANED = frozenset({"available", "manageable", "enroll"})


def server_exists(conn: Connection, server_id: str) -> bool:
    """Whether Nova lists the server, in any project, right now. `GET /servers/{id}` is no proof: for an account
    that is not Nova's admin, Nova answers 404 for every other project's server, live or not. So the listing the
    snapshot reads is read again (one call per page, for each node about to be acted on only)."""
    return any(s.id == server_id for s in conn.compute.servers(details=True, all_projects=True))


def undead(node: dict[str, Any], exists: bool) -> str | None:
    instance = node.get("instance_uuid")
    return f"deployed for instance {instance}, which Nova does not have" if instance and not exists else None


@hammer
class UndeadInstances(Hammer):
    """Give a node whose instance Nova no longer has back to the pool: undeploy it (Ironic tears it down and cleans
    it), or, where it is not deployed, remove the stale `instance_uuid`. Nova's servers (every project) are listed
    again right before acting; a server Nova lists, even one being deleted, is alive."""

    name = "undead-instances"
    reads = ("ironic", "nova")

    def detect(self, snapshot: Snapshot, policy: Policy) -> list[Finding]:
        servers = snapshot.data.get("servers") or []
        alive = {s["id"] for s in servers}
        nodes = {n["uuid"]: n for n in snapshot.nodes}
        found = []
        for node in snapshot.nodes:
            if summary := undead(node, node.get("instance_uuid") in alive):
                found.append(finding(self.name, node, summary, "", node.get("provision_updated_at")))
        for server in servers:  # the reverse: reported, never acted on
            node = nodes.get(server.get(HYPERVISOR) or "")
            if (
                node is not None
                and server.get("status") == "ERROR"
                and server.get("OS-EXT-STS:task_state") != "deleting"
                and node["provision_state"] in CLEANED
                and node.get("instance_uuid") != server["id"]
            ):
                summary = f"Nova server {server['id']} ({server.get('name')}) in ERROR is bound to it, already cleaned"
                found.append(finding(self.name, node, summary, server.get("fault", {}).get("message") or ""))
        return found

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        instance = node.get("instance_uuid")
        if not instance or not found.summary.startswith("deployed for instance"):
            return []  # the reverse case is the user's server: reported only
        kind = "undeploy" if node["provision_state"] in UNDEPLOYABLE else "clear-instance"
        params = {"instance_uuid": instance, "provision_state": node["provision_state"]}
        return [Action(self.name, found.node_uuid, found.node_name, kind, found.summary, params)]

    def read(self, site: SiteConnection, key: str) -> Live:
        live = safety.live(site.conn, key)
        instance = live.node.get("instance_uuid")
        exists = bool(instance) and server_exists(site.conn, instance)
        return Live(live.node, live.ports, live.now, {"server_exists": exists})

    def matches_live(self, live: Live, policy: Policy) -> str | None:
        return undead(live.node, live.context.get("server_exists", True))

    def guard(
        self, subject: dict[str, Any], policy: Policy, now: datetime, conn: Connection, reservations: Reservations
    ) -> None:
        """Every rule of a node hammer, except that the instance the node names is proven gone (Nova's listing of
        every project lacks it): that instance is the fault, not a user's."""
        instance = subject.get("instance_uuid")
        try:
            alive = bool(instance) and server_exists(conn, instance)
        except Exception as exc:  # fails closed: an instance Nova cannot vouch for may be a user's
            why = safety.short_error(exc)
            raise safety.Refused(f"Nova could not be asked about instance {instance}: {why}") from None
        if alive:
            raise safety.Refused(f"user instance {instance} exists in Nova")
        unbound = {**subject, "instance_uuid": None}
        safety.may_touch(self, unbound, policy, now, safety.history_for(conn, subject), reservations)

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        """The same instance, and a node in the state the action was chosen for."""
        return (node.get("instance_uuid"), node["provision_state"]) == (
            action.params.get("instance_uuid"),
            action.params.get("provision_state"),
        )

    def execute(self, conn: Connection, action: Action, live: Live, lease: safety.Lease) -> None:
        if action.kind == "undeploy":
            safety.provision(conn, action.node_uuid, "deleted")
            return
        safety.call(
            conn,
            "patch",
            f"/nodes/{action.node_uuid}",
            [{"op": "remove", "path": "/instance_uuid"}, {"op": "replace", "path": "/instance_info", "value": {}}],
        )
