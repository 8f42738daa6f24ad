"""Fault injection: produce each known error the way it happens in production, where Ironic allows.

Every fault starts from an `available` node. With the testbed's Neutron (`testbed up --with neutron`)
VIFs are real: attached through Ironic's VIF API, broken by deleting the Neutron port or by a
real Neutron outage. Without Neutron, and for one step in every mode, the testbed writes its own
Ironic SQLite database (a fixture, never product code): the VIF record a Neutron-backed attach
would leave, and back-dating `provision_updated_at` so a hung deploy looks as old as the ones
operators find.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import openstack
from keystoneauth1 import adapter as ks_adapter
from openstack.baremetal.v1.node import Node
from openstack.compute.v2.server import Server
from openstack.compute.v2.service import Service
from openstack.connection import Connection
from openstack.exceptions import ResourceFailure

from hammersmith.errors import TestbedError
from hammersmith.testbed import blazar, fleet, nova, process
from hammersmith.testbed.fleet import WORKERS, Admin, wait_for
from hammersmith.testbed.ironic import DEAD_ENDPOINT, Ironic, State
from hammersmith.testbed.neutron import Neutron
from hammersmith.testbed.replication import DATABASE, SERVICE, TABLE, Replication

OPERATOR_REASON = "Replacing DIMM B2, ticket OPS-1432 (jdoe)"
#: the users' project (and its member) whose launches and leases the full tier's faults make
USER_PROJECT = "uc-systems-lab"
USER = "alice"
#: a public flavor for hardware the site no longer has: every launch of it fails with "No valid host"
GONE_FLAVOR = "baremetal.retired_generation"
#: states a fault may leave a node in, for the batch wait
WAIT_TIMEOUT = 60.0
#: how nova-compute fails a build while its cached provider tree holds a provider Placement no longer has
STALE_PROVIDER = "Failed to retrieve allocations for resource provider"
#: the external network idle floating IPs come from
PUBLIC_NETWORK = "public"


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    hands_off: bool
    apply: Callable[[Injector, str], None]
    #: part of the demo scenario (the others serve the hammer tests and benchmarks)
    in_demo: bool = True
    #: the `--with` services it is produced through
    needs: tuple[str, ...] = ()
    #: what it breaks: a node (picked among the available ones), or the site (a leftover object of its own,
    #: recorded under the object's name)
    target: str = "node"


FAULTS: dict[str, Fault] = {}


def fault(
    name: str,
    summary: str,
    hands_off: bool = False,
    in_demo: bool = True,
    needs: tuple[str, ...] = (),
    target: str = "node",
) -> Callable[[Callable[[Injector, str], None]], Callable[[Injector, str], None]]:
    """Register a fault; `hands_off` marks the cases a tool must leave alone."""

    def register(func: Callable[[Injector, str], None]) -> Callable[[Injector, str], None]:
        FAULTS[name] = Fault(name, summary, hands_off, func, in_demo, needs, target)
        return func

    return register


#: `testbed inject --scenario demo`: a mixed fleet, known errors next to what must be left alone
SCENARIOS: dict[str, list[tuple[str, int, str | None]]] = {
    "demo": [
        ("error-teardown", 2, None),
        ("deploy-failed", 1, None),
        ("clean-failed", 1, None),
        ("stuck-deploying", 1, None),
        ("dirty-port", 2, None),
        ("maintenance-no-reason", 1, None),
        ("user-active", 3, None),
        ("operator-maintenance", 1, None),
        ("operator-maintenance", 1, "error-teardown"),
    ],
}


class Injector:
    """Drives faults against one running testbed."""

    def __init__(self, conn: Admin, ironic: Ironic, state: State) -> None:
        self.conn = conn
        self.bm = conn.baremetal
        self.ironic = ironic
        self.state = state
        self.neutron_lock = threading.Lock()  # no Neutron call while another fault has Neutron down
        self.user_lock = threading.Lock()  # the users' project, account and flavor are made once

    @property
    def neutron(self) -> bool:
        return self.state.port_of("neutron") is not None

    def use_flat_network(self, node: str) -> None:
        """The network interface that really talks to Neutron, on the testbed's provisioning network."""
        self.bm.patch_node(
            node,
            [
                {"op": "add", "path": "/network_interface", "value": "flat"},
                {"op": "add", "path": "/driver_info/cleaning_network", "value": self.state.network_id},
                {"op": "add", "path": "/driver_info/provisioning_network", "value": self.state.network_id},
            ],
        )

    def attach_vif(self, node: str) -> str:
        """A VIF the way Nova attaches one: with Neutron, a real port through Ironic's VIF API;
        without, a fixture write of the record that API would leave."""
        if not self.neutron:
            vif = str(uuid.uuid4())
            self.sql(
                "UPDATE ports SET internal_info = ? WHERE node_id = (SELECT id FROM nodes WHERE name = ?)",
                json.dumps({"tenant_vif_port_id": vif}),
                node,
            )
            return vif
        with self.neutron_lock:
            port = self.conn.network.create_port(network_id=self.state.network_id, name=f"vif-{node}")
            self.bm.attach_vif_to_node(node, port.id)
        return str(port.id)

    @contextmanager
    def neutron_down(self) -> Iterator[None]:
        """A real Neutron outage (stopped by PID, started again), one at a time."""
        if not self.neutron:
            yield  # Ironic's Neutron endpoint is a dead port anyway
            return
        with self.neutron_lock:
            process.stop(self.state.pid_of("neutron"))
            try:
                yield
            finally:
                port = self.state.port_of("neutron") or 0
                self.state.set_pid("neutron", Neutron(self.ironic.dir / "neutron").start(port))
                self.ironic.save_state(self.state)

    # -- the full tier: Nova, Placement, Blazar, and a user of them ---------------------------------
    @property
    def cloud(self) -> Connection:
        """The testbed's admin, project-scoped (Nova, Placement, Glance, Blazar)."""
        return self.conn.project

    def compute_host(self, node_id: str) -> str:
        """The nova-compute host that manages a node (each has its own: see testbed/nova.py)."""
        return next(
            h.service_details["host"] for h in self.cloud.compute.hypervisors(details=True) if h.name == node_id
        )

    def user_project_id(self) -> str:
        """USER_PROJECT, with USER as its member (created once; the password kept in the testbed's state)."""
        with self.user_lock:
            identity = self.cloud.identity
            project = identity.find_project(USER_PROJECT) or identity.create_project(
                name=USER_PROJECT, domain_id="default", description="a research group using the testbed"
            )
            if USER not in self.state.passwords:
                self.state.passwords[USER] = secrets.token_urlsafe(18)
                user = identity.create_user(
                    name=USER, password=self.state.passwords[USER], default_project_id=project.id, domain_id="default"
                )
                identity.assign_project_role_to_user(project, user, identity.find_role("member", ignore_missing=False))
                self.ironic.save_state(self.state)
            return str(project.id)

    def user(self) -> Connection:
        """USER, logged in to USER_PROJECT: what a launch or a lease of a user does."""
        self.user_project_id()
        assert self.state.auth_url is not None
        auth = {
            "auth_url": self.state.auth_url,
            "username": USER,
            "password": self.state.passwords[USER],
            "project_name": USER_PROJECT,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        }
        return openstack.connect(load_yaml_config=False, load_envvars=False, auth_type="v3password", auth=auth)

    def user_blazar(self) -> ks_adapter.Adapter:
        return blazar.client(self.conn.keep(self.user()))

    def compute_service(self, node_id: str) -> Service:
        """The nova-compute service that manages a node."""
        host = self.compute_host(node_id)
        return next(s for s in self.cloud.compute.services(binary="nova-compute") if s.host == host)

    def wait_reservable(self, node_id: str, reservable: bool) -> None:
        """Until Blazar lists the node's host as (not) reservable: its monitor polls Nova every few seconds."""
        api = blazar.client(self.cloud)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            hosts = api.get("/os-hosts").json()["hosts"]
            if bool(next(h for h in hosts if h["hypervisor_hostname"] == node_id)["reservable"]) == reservable:
                return
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"Blazar's host {node_id}: reservable is not {reservable} after {WAIT_TIMEOUT:.0f} s"
                )
            time.sleep(1.0)

    def wait_for_lease(self, lease_id: str, status: str) -> dict:
        """Blazar's manager acts on lease events every 10 s."""
        api = blazar.client(self.cloud)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while (lease := api.get(f"/leases/{lease_id}").json()["lease"])["status"] != status:
            if time.monotonic() > deadline:
                raise TestbedError(f"lease {lease['name']} is {lease['status']}, not {status}, after {WAIT_TIMEOUT} s")
            time.sleep(1.0)
        return dict(lease)

    def offered(self, node_id: str) -> bool:
        """Whether Placement offers the node's unit: a node back in `available` stays reserved there until its
        nova-compute's next update (every 30 s), and a boot onto it meanwhile fails with No valid host."""
        path = f"/resource_providers/{node_id}/inventories"
        found = self.cloud.placement.get(path, microversion="1.14").json().get("inventories", {})
        return any(i["total"] - i["reserved"] > 0 for i in found.values())

    def bootable(self, count: int) -> list[str]:
        """`count` healthy available nodes without a fault that Placement offers (waiting for the ones just returned
        to the pool), for a test that boots onto them."""
        deadline = time.monotonic() + WAIT_TIMEOUT * 2
        while True:
            offered = [name for name in self.free() if self.offered(self.bm.get_node(name).id)]
            if len(offered) >= count:
                return offered[:count]
            if time.monotonic() > deadline:
                raise TestbedError(f"Placement offers {len(offered)} of the free nodes, {count} needed")
            time.sleep(2.0)

    def schedulable(self, node_id: str) -> None:
        """Until Placement offers the node (see `offered`)."""
        deadline = time.monotonic() + WAIT_TIMEOUT * 2
        while not self.offered(node_id):
            if time.monotonic() > deadline:
                raise TestbedError(f"Placement offers nothing of node {node_id} after {WAIT_TIMEOUT * 2:.0f} s")
            time.sleep(1.0)

    def boot(self, node: str, name: str) -> Server:
        """A server deployed onto this node through Nova (the admin picks its compute host), once ACTIVE.

        Blazar deletes and re-creates its own provider under the node's when a host is deleted and enrolled again
        (retirement-enforcer's test); nova-compute keeps the deleted one in its cached provider tree and fails a
        build on the node until its next refresh (nova.PROVIDER_REFRESH), so that failure gets one more try."""
        found = self.bm.get_node(node)
        self.schedulable(found.id)
        try:
            return self.launch(found, name)
        except TestbedError as failed:
            if STALE_PROVIDER not in str(failed):
                raise
        time.sleep(2 * nova.PROVIDER_REFRESH)
        return self.launch(found, name)

    def launch(self, node: Node, name: str) -> Server:
        """One boot onto the node's compute host; a server that goes to ERROR is deleted and its fault raised."""
        compute = self.cloud.compute
        server = compute.create_server(
            name=name,
            flavor_id=compute.find_flavor(nova.flavor_name(node.resource_class), ignore_missing=False).id,
            image_id=self.cloud.image.find_image(nova.IMAGE, ignore_missing=False).id,
            networks=[{"uuid": self.state.network_id}],
            availability_zone=f"nova:{self.compute_host(node.id)}",
        )
        try:
            return compute.wait_for_server(server, failures=["ERROR"], interval=1, wait=WAIT_TIMEOUT * 3)
        except ResourceFailure as failed:
            fault = (compute.get_server(server.id).fault or {}).get("message", "")
            compute.delete_server(server)
            compute.wait_for_delete(server, interval=1, wait=WAIT_TIMEOUT)
            raise TestbedError(f"server {name} on node {node.name} went to ERROR: {fault}") from failed

    def gone_flavor(self) -> str:
        """GONE_FLAVOR (created once): one unit of a resource class no node has."""
        with self.user_lock:
            compute = self.cloud.compute
            if flavor := compute.find_flavor(GONE_FLAVOR):
                return str(flavor.id)
            flavor = compute.create_flavor(name=GONE_FLAVOR, ram=1024, vcpus=1, disk=10)
            extra = {"resources:CUSTOM_RETIRED_GENERATION": "1", "resources:VCPU": "0"}
            compute.create_flavor_extra_specs(flavor, extra | {"resources:MEMORY_MB": "0", "resources:DISK_GB": "0"})
            return str(flavor.id)

    def public_network(self) -> str:
        """The external network floating IPs come from (created once, with its subnet): TEST-NET-3."""
        network = self.conn.network
        if found := network.find_network(PUBLIC_NETWORK):
            return str(found.id)
        public = network.create_network(
            name=PUBLIC_NETWORK,
            provider_network_type="flat",
            provider_physical_network="public",
            is_router_external=True,
        )
        network.create_subnet(network_id=public.id, ip_version=4, cidr="203.0.113.0/24", enable_dhcp=False)
        return str(public.id)

    # -- helpers the faults share -------------------------------------------------------------
    def wait(self, node: str, *states: str) -> dict:
        return wait_for(self.conn, [node], set(states), WAIT_TIMEOUT)[node]

    def sql(self, statement: str, *params: object) -> None:
        """A fixture write to the testbed's own Ironic database (see the module docstring)."""
        with sqlite3.connect(self.ironic.db, timeout=30) as db:
            if db.execute(statement, params).rowcount != 1:
                raise TestbedError(f"fixture write matched no row: {statement}")

    def with_maintenance(self, node: str, **fields: object) -> None:
        """Change interfaces Ironic only lets you change in maintenance, then leave maintenance."""
        self.bm.set_node_maintenance(node, reason="hammersmith testbed: restoring interfaces")
        self.bm.update_node(node, **fields)
        self.bm.unset_node_maintenance(node)

    def deploy(self, node: str, **instance_info: object) -> None:
        info = {"image_source": f"{self.state.url}/", "image_checksum": "0" * 32, **instance_info}
        self.bm.update_node(node, instance_info=info)
        self.bm.set_node_provision_state(node, "active", wait=False)

    # -- selection and bookkeeping ----------------------------------------------------------
    def free(self) -> list[str]:
        """The healthy available nodes that carry no fault yet, by name."""
        return sorted(
            n.name
            for n in self.bm.nodes(details=True)
            if n.provision_state == "available" and not n.is_maintenance and n.name not in self.state.faults
        )

    def pick(self, count: int) -> list[str]:
        """The first `count` healthy available nodes that carry no fault yet."""
        free = self.free()
        if len(free) < count:
            raise TestbedError(
                f"only {len(free)} healthy available nodes left, {count} needed",
                hint="run 'hammersmith testbed up --nodes N' with more nodes",
            )
        return free[:count]

    def targets(self, name: str, count: int) -> list[str]:
        """What `count` injections of a fault break: picked nodes, or for a site fault new objects' names."""
        if FAULTS[name].target == "site":
            taken = sum(name in f for f in self.state.faults.values())
            return [f"{name}-{taken + k}" for k in range(1, count + 1)]
        return self.pick(count)

    def release(self, *names: str) -> None:
        """Forget the faults of nodes a test has healed again, so `pick` may hand them out anew."""
        for name in names:
            self.state.faults.pop(name, None)
        self.ironic.save_state(self.state)

    def inject(self, name: str, nodes: list[str], combine: str | None = None) -> None:
        """Apply a fault (optionally after another one) to several nodes concurrently."""
        steps = [FAULTS[combine], FAULTS[name]] if combine else [FAULTS[name]]
        for step in steps:
            if missing := [service for service in step.needs if self.state.port_of(service) is None]:
                raise TestbedError(
                    f"fault {step.name} is produced through {', '.join(missing)}, which this testbed does not run",
                    hint=f"'hammersmith testbed up --with {','.join(missing)}'",
                )

        def one(node: str) -> None:
            for step in steps:
                step.apply(self, node)

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(one, nodes))
        for node in nodes:
            self.state.faults[node] = [s.name for s in steps]
        self.ironic.save_state(self.state)


@fault("error-teardown", "error after 'Failed to tear down': Neutron unreachable while detaching the VIF")
def error_teardown(inj: Injector, node: str) -> None:
    # a tenant deploy on the flat network with a VIF attached, as Nova leaves it
    if inj.neutron:
        inj.use_flat_network(node)
    else:
        inj.bm.update_node(node, network_interface="flat")
    inj.deploy(node, display_name=f"experiment-{node}")
    inj.wait(node, "active")
    inj.attach_vif(node)
    with inj.neutron_down():  # Neutron is down while the tear down detaches the VIF: it fails
        inj.bm.set_node_provision_state(node, "deleted", wait=False)
        inj.wait(node, "error")
    # Neutron "comes back": the node keeps its error but could now be torn down again
    inj.with_maintenance(node, network_interface="noop")


@fault("deploy-failed", "deploy failed: the image server is unreachable")
def deploy_failed(inj: Injector, node: str) -> None:
    inj.bm.update_node(node, deploy_interface="direct")
    inj.deploy(node, image_source=f"{DEAD_ENDPOINT}images/ubuntu-22.04.qcow2")
    inj.wait(node, "deploy failed")
    inj.with_maintenance(node, deploy_interface="fake")


@fault("clean-failed", "clean failed: a BIOS clean step rejects its settings (Ironic also sets maintenance)")
def clean_failed(inj: Injector, node: str) -> None:
    inj.bm.set_node_provision_state(node, "manage", wait=False)
    inj.wait(node, "manageable")
    inj.bm.set_node_provision_state(
        node,
        "clean",
        wait=False,
        clean_steps=[{"interface": "bios", "step": "apply_configuration", "args": {"settings": [{"bogus": 1}]}}],
    )
    inj.wait(node, "clean failed")


@fault(
    "clean-failed-automated",
    "clean failed on the way to available: the cleaning ramdisk never called back and the clean was aborted",
    in_demo=False,
)
def clean_failed_automated(inj: Injector, node: str) -> None:
    inj.bm.set_node_provision_state(node, "manage", wait=False)
    inj.wait(node, "manageable")
    inj.bm.update_node(node, deploy_interface="direct")  # cleaning waits for a ramdisk that never comes
    inj.bm.set_node_provision_state(node, "provide", wait=False)
    inj.wait(node, "clean wait")
    inj.bm.set_node_provision_state(node, "abort", wait=False)
    inj.wait(node, "clean failed")
    inj.with_maintenance(node, deploy_interface="fake")  # the ramdisk "works" again: a retry succeeds


@fault(
    "teardown-keeps-failing",
    "error after 'Failed to tear down', and every tear down fails again (Neutron stays down)",
    in_demo=False,  # needs the Ironic-only tier; the demo runs Neutron
)
def teardown_keeps_failing(inj: Injector, node: str) -> None:
    if inj.neutron:
        raise TestbedError("teardown-keeps-failing needs the Ironic-only testbed (its Neutron is a dead port)")
    error_teardown(inj, node)
    inj.with_maintenance(node, network_interface="flat")  # Ironic's Neutron endpoint stays unreachable
    inj.attach_vif(node)  # the VIF the next tear down must unbind, through that dead endpoint


@fault("stuck-deploying", "held in 'wait call-back': the deploy ramdisk never calls back (aged 2 h)")
def stuck_deploying(inj: Injector, node: str) -> None:
    inj.bm.update_node(node, deploy_interface="direct")
    inj.deploy(node, display_name=f"experiment-{node}")
    inj.wait(node, "wait call-back")
    aged = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None).isoformat(sep=" ")
    inj.sql("UPDATE nodes SET provision_updated_at = ? WHERE name = ?", aged, node)


@fault("dirty-port", "available, but its port keeps a stale tenant_vif_port_id in internal_info")
def dirty_port(inj: Injector, node: str) -> None:
    if inj.neutron:  # a VIF attached through Ironic, whose Neutron port is then deleted behind its back
        inj.use_flat_network(node)
        vif = inj.attach_vif(node)
        with inj.neutron_lock:
            inj.conn.network.delete_port(vif)
    else:
        inj.attach_vif(node)


@fault("maintenance-no-reason", "maintenance set without a reason")
def maintenance_no_reason(inj: Injector, node: str) -> None:
    inj.bm.set_node_maintenance(node)


@fault("user-active", "deployed, powered on, with a user's instance (leave alone)", hands_off=True)
def user_active(inj: Injector, node: str) -> None:
    inj.bm.update_node(node, instance_id=str(uuid.uuid4()))
    inj.deploy(node, display_name=f"user-experiment-{node}", project_id="a1b2c3d4e5f6")
    inj.wait(node, "active")
    inj.bm.set_node_power_state(node, "power on", wait=False)


@fault("operator-maintenance", "maintenance with an operator's reason (leave alone)", hands_off=True)
def operator_maintenance(inj: Injector, node: str) -> None:
    inj.bm.set_node_maintenance(node, reason=OPERATOR_REASON)


# -- where the services disagree (the full tier: Nova, Placement, Blazar) ---------------------------


@fault(
    "lease-start-failed",
    "a lease of the node whose start fails: its host left Nova's free pool behind Blazar's back",
    in_demo=False,
    needs=("blazar",),
)
def lease_start_failed(inj: Injector, node: str) -> None:
    found = inj.bm.get_node(node)
    node_id, node_type = found.id, found.resource_class
    host = inj.compute_host(node_id)
    freepool = inj.cloud.compute.find_aggregate(blazar.FREEPOOL, ignore_missing=False)
    inj.cloud.compute.remove_host_from_aggregate(freepool, host)
    try:
        lease = (
            inj.user_blazar()
            .post("/leases", json=blazar.lease_body(f"experiment-{node}", node_type, node=node_id))
            .json()["lease"]
        )
        inj.wait_for_lease(lease["id"], "ERROR")
    finally:  # the host is back: the next lease starts, this one stays failed
        inj.cloud.compute.add_host_to_aggregate(freepool, host)


@fault(
    "launch-failed",
    f"an instance in ERROR for project {USER_PROJECT}: no valid host for its flavor",
    in_demo=False,
    needs=("nova",),
    target="site",
)
def launch_failed(inj: Injector, name: str) -> None:
    conn = inj.user()
    try:
        server = conn.compute.create_server(
            name=name,
            flavor_id=inj.gone_flavor(),
            image_id=inj.cloud.image.find_image(nova.IMAGE, ignore_missing=False).id,
            networks=[{"uuid": inj.state.network_id}],
        )
        conn.compute.wait_for_server(server, status="ERROR", interval=1, wait=WAIT_TIMEOUT)
    finally:
        conn.close()


@fault(
    "retired-reservable",
    "retired in Ironic (hardware going away) but still reservable in Blazar",
    in_demo=False,
    needs=("blazar",),
)
def retired_reservable(inj: Injector, node: str) -> None:
    inj.bm.set_node_provision_state(node, "manage", wait=False)  # Ironic retires no `available` node
    inj.wait(node, "manageable")
    inj.bm.patch_node(
        node,
        [
            {"op": "add", "path": "/retired", "value": True},
            {"op": "add", "path": "/retired_reason", "value": "end of warranty, rack C4"},
        ],
    )


@fault(
    "host-not-reservable",
    "its nova-compute disabled by an operator: Blazar's host monitor makes the host not reservable",
    in_demo=False,
    needs=("blazar",),
)
def host_not_reservable(inj: Injector, node: str) -> None:
    node_id = inj.bm.get_node(node).id
    service = inj.compute_service(node_id)
    inj.cloud.compute.disable_service(service, service.host, service.binary, disabled_reason="PDU replacement, rack C4")
    inj.wait_reservable(node_id, False)


@fault(
    "undead-instance",
    "deployed for an instance Nova no longer has (deleted while its nova-compute was down)",
    in_demo=False,
    needs=("nova",),
)
def undead_instance(inj: Injector, node: str) -> None:
    node_id = inj.bm.get_node(node).id
    server = inj.boot(node, f"experiment-{node}")
    # a compute service that is down: Nova deletes the server in its own database only (a "local delete"),
    # and Ironic keeps the node deployed for it
    service = inj.compute_service(node_id)
    inj.cloud.compute.update_service_forced_down(service, service.host, service.binary, True)
    try:
        inj.cloud.compute.delete_server(server)
        inj.cloud.compute.wait_for_delete(server, interval=1, wait=WAIT_TIMEOUT)
    finally:
        inj.cloud.compute.update_service_forced_down(service, service.host, service.binary, False)


@fault(
    "conflicting-mac",
    "a Neutron port on the provisioning network holds the MAC of the node's Ironic port",
    in_demo=False,
    needs=("neutron",),
)
def conflicting_mac(inj: Injector, node: str) -> None:
    port = next(inj.bm.ports(node=node, details=True))
    with inj.neutron_lock:
        inj.conn.network.create_port(network_id=inj.state.network_id, name=f"leftover-{node}", mac_address=port.address)


@fault(
    "orphan-resource-provider",
    "a Placement resource provider (with inventory) named after an Ironic node that no longer exists",
    in_demo=False,
    needs=("placement",),
    target="site",
)
def orphan_resource_provider(inj: Injector, name: str) -> None:
    gone = str(uuid.uuid4())
    placement = inj.cloud.placement
    provider = placement.create_resource_provider(name=gone, uuid=gone)
    placement.create_resource_provider_inventory(
        provider, resource_class=f"CUSTOM_{fleet.RESOURCE_CLASSES[0].upper()}", total=1
    )


@fault(
    "idle-floating-ip",
    f"a floating IP of project {USER_PROJECT}, associated with nothing",
    in_demo=False,
    needs=("neutron",),
    target="site",
)
def idle_floating_ip(inj: Injector, name: str) -> None:
    with inj.neutron_lock:
        public = inj.public_network()
        inj.conn.network.create_ip(
            floating_network_id=public, project_id=inj.user_project_id(), description=f"{name}: left behind"
        )


# -- MariaDB replication (`testbed up --with replication`): a replica whose threads stop ---------------------


def _replication(inj: Injector) -> Replication:
    """The testbed's primary, replica and exporter, once both replication threads run: a fault starts from a
    healthy replica (with its IO thread stopped, the primary's duplicate row would never reach it)."""
    server = Replication(inj.ironic.dir / SERVICE)
    status = server.slave_status()
    io, sql = status.get("Slave_IO_Running"), status.get("Slave_SQL_Running")
    if (io, sql) != ("Yes", "Yes"):
        raise TestbedError(
            f"the testbed's replica is not replicating (IO thread: {io}, SQL thread: {sql})",
            hint="heal it first (START SLAVE once the cause is gone), or 'testbed down' and 'up' again",
        )
    return server


@fault(
    "replication-connection-lost",
    "the replica's IO thread stopped with a connection error: its primary went away (started again since)",
    in_demo=False,
    needs=("replication",),
    target="site",
)
def replication_connection_lost(inj: Injector, name: str) -> None:
    server = _replication(inj)
    pids = inj.state.pids_of(SERVICE)
    server.primary.stop(pids["primary"])  # by PID; the replica retries a few times, then its IO thread stops
    try:
        server.wait_stopped("IO")
    finally:  # the primary is back: starting replication again would succeed, but nothing does it
        pids["primary"] = server.primary.start(inj.state.services[SERVICE]["ports"]["primary"])
        inj.state.set_pid(SERVICE, {each: pid for each, pid in pids.items() if pid is not None})
        inj.ironic.save_state(inj.state)


@fault(
    "replication-duplicate-key",
    "the replica's SQL thread stopped on error 1062: a row written on the replica, then the same key on the primary",
    in_demo=False,
    needs=("replication",),
    target="site",
)
def replication_duplicate_key(inj: Injector, name: str) -> None:
    server = _replication(inj)
    table = f"`{DATABASE}`.`{TABLE}`"
    newest = f"SELECT COALESCE(MAX(id), 0) FROM {table}"
    key = 1 + max(int(server.primary.sql(newest).split()[-1]), int(server.replica.sql(newest).split()[-1]))
    server.replica.sql(f"INSERT INTO {table} VALUES ({key}, 'written on the replica by hand ({name})')")
    server.primary.sql(f"INSERT INTO {table} VALUES ({key}, 'written on the primary ({name})')")
    server.wait_stopped("SQL")


# -- unutilized-lease-reaper and lease-start-reminder: leases of the users' project ------------------------------


def user_lease(inj: Injector, node: str, name: str, start: datetime | None = None, hours: float = 6.0) -> dict:
    """A lease of exactly this node by USER (start None: now), once Blazar has started it or holds it pending."""
    found = inj.bm.get_node(node)
    body = blazar.lease_body(name, found.resource_class, start=start, hours=hours, node=found.id)
    made = inj.user_blazar().post("/leases", json=body).json()["lease"]
    return inj.wait_for_lease(made["id"], "ACTIVE" if start is None else "PENDING")


@fault(
    "idle-lease",
    f"an active lease of the node by project {USER_PROJECT} for 6 h, with no instance on it",
    in_demo=False,
    needs=("blazar",),
)
def idle_lease(inj: Injector, node: str) -> None:
    user_lease(inj, node, f"idle-{node}")


@fault(
    "lease-starting",
    f"a lease of the node by project {USER_PROJECT} that starts in 3 h",
    in_demo=False,
    needs=("blazar",),
)
def lease_starting(inj: Injector, node: str) -> None:
    user_lease(inj, node, f"soon-{node}", start=datetime.now(UTC) + timedelta(hours=3), hours=1.0)


# -- freepool-consistency: Blazar's free pool in Nova disagrees with the leases -------------------------------


@fault(
    "freepool-missing-host",
    "a host no lease holds, taken out of Blazar's free pool aggregate by hand (Nova's aggregate API)",
    in_demo=False,
    needs=("blazar",),
)
def freepool_missing_host(inj: Injector, node: str) -> None:
    freepool = inj.cloud.compute.find_aggregate(blazar.FREEPOOL, ignore_missing=False)
    inj.cloud.compute.remove_host_from_aggregate(freepool, inj.compute_host(inj.bm.get_node(node).id))


@fault(
    "freepool-extra-host",
    f"a host in an active lease of {USER_PROJECT} (lease experiment-NODE), added back to the free pool by hand",
    in_demo=False,
    needs=("blazar",),
)
def freepool_extra_host(inj: Injector, node: str) -> None:
    found = inj.bm.get_node(node)
    body = blazar.lease_body(f"experiment-{node}", found.resource_class, node=found.id)
    inj.wait_for_lease(inj.user_blazar().post("/leases", json=body).json()["lease"]["id"], "ACTIVE")
    freepool = inj.cloud.compute.find_aggregate(blazar.FREEPOOL, ignore_missing=False)
    inj.cloud.compute.add_host_to_aggregate(freepool, inj.compute_host(found.id))
