"""Enrol a fleet of fake-hardware nodes through the Ironic API and bring them to `available`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

import openstack
from openstack.baremetal.v1._proxy import Proxy as BaremetalProxy
from openstack.connection import Connection
from openstack.network.v2._proxy import Proxy as NetworkProxy

from hammersmith.errors import TestbedError
from hammersmith.testbed import keystone
from hammersmith.testbed.ironic import State

RESOURCE_CLASSES = ("compute_skylake", "compute_cascadelake", "gpu_rtx_6000")
WORKERS = 8
Progress = Callable[[int], None]


class Admin:
    """The testbed's own operator access to Ironic and Neutron (enrolment, faults, tests), never hammersmith's.

    noauth: one connection with endpoint overrides. Keystone: the bootstrap admin logs in twice,
    because Ironic creates nodes owned by no project (as an operator's are) only for a
    system-scoped token, and Neutron accepts only project-scoped ones.
    """

    def __init__(self, state: State) -> None:
        self.state = state
        self._conns: list[Connection] = []

    def _connect(self, system: bool) -> Connection:
        if self.state.auth_url:
            auth = keystone.admin_auth(self.state.auth_url, self.state.passwords["admin"], system=system)
        else:
            auth = {"auth_type": "none", "baremetal_endpoint_override": self.state.url}
            if self.state.neutron_url:
                auth["network_endpoint_override"] = self.state.neutron_url
        return self.keep(
            openstack.connect(load_yaml_config=False, load_envvars=False, baremetal_api_version="1", **auth)
        )

    @cached_property
    def baremetal(self) -> BaremetalProxy:
        return self._connect(system=True).baremetal

    @cached_property
    def project(self) -> Connection:
        """Project-scoped (the admin project): Neutron, Nova, Placement, Glance and Blazar accept only these."""
        return self._connect(system=False)

    @cached_property
    def network(self) -> NetworkProxy:
        return self.project.network

    def keep(self, conn: Connection) -> Connection:
        """Another login (a user's) to close with these."""
        self._conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._conns:
            conn.close()


def connect(state: State) -> Admin:
    """The testbed's admin access, from its state alone (no clouds.yaml needed)."""
    return Admin(state)


def node_name(index: int) -> str:
    return f"node-{index:03d}"


def mac(index: int) -> str:
    return "52:54:00:" + ":".join(f"{b:02x}" for b in index.to_bytes(3, "big"))


def _enrol_one(conn: Admin, index: int) -> str:
    rc = RESOURCE_CLASSES[(index - 1) % len(RESOURCE_CLASSES)]
    node = conn.baremetal.create_node(
        name=node_name(index),
        driver="fake-hardware",
        resource_class=rc,
        deploy_interface="fake",
        network_interface="noop",
        properties={"cpus": 48, "memory_mb": 196608, "local_gb": 240, "cpu_arch": "x86_64"},
    )
    conn.baremetal.create_port(
        node_id=node.id,
        address=mac(index),
        pxe_enabled=True,
        physical_network="physnet1",
        local_link_connection={"switch_id": "00:11:22:33:44:55", "port_id": f"Eth1/{index}", "switch_info": "sw1"},
    )
    conn.baremetal.set_node_provision_state(node.id, "manage", wait=False)
    return node.id


def wait_for(
    conn: Admin,
    names: Iterable[str],
    states: set[str],
    timeout: float,
    progress: Progress | None = None,
    fail_fast: bool = True,
) -> dict[str, dict]:
    """Poll one list call until every named node is in one of `states`; fail early on a *failed* state
    unless `fail_fast` is off (something else, e.g. a hammer, is expected to move it on)."""
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        nodes = {n["name"]: n for n in list_nodes(conn, light=True) if n["name"] in wanted}
        done = [n for n in nodes.values() if n["provision_state"] in states]
        if progress:
            progress(len(done))
        if len(done) == len(wanted):
            return nodes
        failed = [
            n for n in nodes.values() if n["provision_state"].endswith("failed") or n["provision_state"] == "error"
        ]
        if fail_fast and failed and not any(s.endswith("failed") or s == "error" for s in states):
            n = failed[0]
            raise TestbedError(f"node {n['name']} went to {n['provision_state']}: {n.get('last_error')}")
        if time.monotonic() > deadline:
            late = sorted(f"{n['name']}={n['provision_state']}" for n in nodes.values() if n not in done)
            raise TestbedError(f"timed out after {timeout:.0f} s waiting for {sorted(states)}: {', '.join(late[:10])}")
        time.sleep(0.5)


def list_nodes(conn: Admin, light: bool = False) -> list[dict]:
    """Every node as a plain dict, one paginated list call; `light` asks only what waits need."""
    nodes = (
        conn.baremetal.nodes(fields=["name", "provision_state", "last_error"])
        if light
        else conn.baremetal.nodes(details=True)
    )
    return [n.to_dict(computed=False) for n in nodes]


def settled(conn: Admin, count: int, timeout: float = 60.0) -> None:
    """Wait until the enrolled fleet is at rest: every node powered on and unlocked (no conductor holds it), so a copy
    of the database starts another Ironic with nothing half-done."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = [n.to_dict(computed=False) for n in conn.baremetal.nodes(fields=["name", "power_state", "reservation"])]
        busy = [n["name"] for n in nodes if n.get("power_state") != "power on" or n.get("reservation")]
        if len(nodes) == count and not busy:
            return
        if time.monotonic() > deadline:
            raise TestbedError(f"the fleet did not settle in {timeout:.0f} s: {', '.join(busy[:10])}")
        time.sleep(0.5)


def enrol(conn: Admin, count: int, progress: Progress | None = None, timeout: float = 120.0) -> list[str]:
    """Create `count` nodes with a port each, manage, provide (automated clean), power on."""
    names = [node_name(i) for i in range(1, count + 1)]
    with ThreadPoolExecutor(WORKERS) as pool:
        ids = list(pool.map(lambda i: _enrol_one(conn, i), range(1, count + 1)))
    wait_for(conn, names, {"manageable"}, timeout)
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda nid: conn.baremetal.set_node_provision_state(nid, "provide", wait=False), ids))
    wait_for(conn, names, {"available"}, timeout, progress)
    with ThreadPoolExecutor(WORKERS) as pool:  # after cleaning: a power action would lock the node mid-way
        list(pool.map(lambda nid: conn.baremetal.set_node_power_state(nid, "power on", wait=False), ids))
    return names
