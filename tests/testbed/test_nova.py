"""The full tier's Nova on Ironic, real, from `lifecycle.up(..., {"nova"})`: one nova-compute per node, each node
its own compute host; its processes stopped and started again by their PIDs, and `down` leaves nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openstack.connection import Connection

from hammersmith.testbed import fleet, keystone, lifecycle, nova, process
from hammersmith.testbed.ironic import State, free_port, port_in_use
from tests.conftest import _quiet_step
from tests.testbed.test_full_tier import INSTALLED, processes
from tests.testbed.test_infra import listening_ports, rss_mb, tree

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not INSTALLED,
        reason="not installed: mariadb-server, rabbitmq-server (scripts/setup --test installs the Debian packages)",
    ),
]
NODES = 4


@dataclass
class Tier:
    workdir: Path
    state: State
    #: Ironic node id -> name, resource class and the shard `up` gave it
    nodes: dict[str, dict[str, str]]

    def admin(self) -> Connection:
        assert self.state.auth_url
        return keystone.admin(self.state.auth_url, self.state.passwords["admin"])

    @property
    def api_port(self) -> int:
        port = self.state.port_of("nova")
        assert port
        return port


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    """`up` with nova (and all it needs) and 4 nodes; its time and the tier's resident memory printed."""
    workdir = tmp_path_factory.mktemp("nova-tier")
    warm = (nova.venv_dir() / ".hammersmith-complete").exists()
    started = time.monotonic()
    try:
        state = lifecycle.up(workdir, NODES, free_port(), _quiet_step, {"nova"})
        seconds = time.monotonic() - started
        pids = processes(workdir)
        print(
            f"\nup --with nova ({', '.join(sorted(state.services))}; {NODES} nodes, {'warm' if warm else 'cold'}): "
            f"{seconds:.1f} s; resident {rss_mb(pids):.0f} MB ({len(pids)} processes), "
            f"Nova's {rss_mb({p for pid in state.pids_of('nova').values() if pid for p in tree(pid)}):.0f} MB"
        )
        admin = fleet.connect(state)
        try:
            nodes = {
                n.id: {"name": n.name, "resource_class": n.resource_class, "shard": n.shard}
                for n in admin.baremetal.nodes(details=True)
            }
        finally:
            admin.close()
        yield Tier(workdir, state, nodes)
    finally:
        lifecycle.down(workdir)


def wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check` every half second until it holds; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {what} within {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def test_every_nova_process_is_recorded_and_the_api_refuses_requests_without_a_token(tier: Tier) -> None:
    pids = tier.state.pids_of("nova")
    expected = {"api", "conductor", "scheduler", *(f"compute-{i}" for i in range(1, NODES + 1))}
    assert set(pids) == expected and next(iter(pids)) == "api" and tier.state.pid_of("nova") == pids["api"]
    assert all(process.owned(pid, lifecycle.service_dir(tier.workdir, "nova")) for pid in pids.values())
    status = lifecycle.status(tier.workdir)["nova"]
    assert status["running"] and status["processes"] == pids and status["url"].endswith("/v2.1")
    assert httpx.get(f"http://127.0.0.1:{tier.api_port}/v2.1/servers").status_code == 401


def test_each_ironic_node_is_a_hypervisor_of_the_compute_host_managing_its_shard(tier: Tier) -> None:
    """A shard per nova-compute, a node per shard: every node is a compute host of its own."""
    conn = tier.admin()
    try:
        found = {h.name: h.service_details["host"] for h in conn.compute.hypervisors(details=True)}
        services = {s.host for s in conn.compute.services() if s.binary == "nova-compute" and s.state == "up"}
    finally:
        conn.close()
    expected = {
        node_id: nova.compute_host(int(node["shard"].rsplit("-", 1)[1])) for node_id, node in tier.nodes.items()
    }
    assert found == expected
    assert sorted(node["shard"] for node in tier.nodes.values()) == [nova.shard(i) for i in range(1, NODES + 1)]
    assert services == {nova.compute_host(i) for i in range(1, NODES + 1)}


def test_placement_has_one_provider_per_node_with_its_resource_class(tier: Tier) -> None:
    """What nova-compute writes for each node: a provider named by its id, one unit of CUSTOM_<resource class>.

    Two computes whose nodes share a resource class race to create it in Placement; the loser's first inventory
    is refused ("No such resource class") and written by its next resource update (UPDATE_RESOURCES_INTERVAL)."""
    expected = {node_id: {f"CUSTOM_{node['resource_class'].upper()}": 1} for node_id, node in tier.nodes.items()}
    conn = tier.admin()
    try:

        def inventories() -> dict[str, dict[str, int]]:
            return {
                p.name: {i.resource_class: i.total for i in conn.placement.resource_provider_inventories(p)}
                for p in conn.placement.resource_providers()
            }

        print(f"\nevery inventory in Placement after {wait(lambda: inventories() == expected, 60, 'written'):.1f} s")
    finally:
        conn.close()


@pytest.mark.timeout(300)
def test_a_server_boots_onto_an_ironic_node_and_its_deletion_makes_the_node_available(tier: Tier) -> None:
    """The flavor `up` made for node-001's resource class asks for one unit of it and nothing else; the image
    `up` put in Glance is a 1 MiB raw file; the network is the testbed's Neutron network, with the subnet `up`
    gave it."""
    resource_class = next(n["resource_class"] for n in tier.nodes.values() if n["name"] == fleet.node_name(1))
    conn = tier.admin()
    admin = fleet.connect(tier.state)
    try:
        assert [s.cidr for s in admin.network.subnets(network_id=tier.state.network_id)] == [lifecycle.SUBNET]
        flavor = conn.compute.find_flavor(nova.flavor_name(resource_class), ignore_missing=False, get_extra_specs=True)
        assert flavor.extra_specs[f"resources:CUSTOM_{resource_class.upper()}"] == "1"
        image = conn.image.find_image(nova.IMAGE, ignore_missing=False)
        started = time.monotonic()
        server = conn.compute.create_server(
            name="bm-1", flavor_id=flavor.id, image_id=image.id, networks=[{"uuid": tier.state.network_id}]
        )
        server = conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=180)
        boot = time.monotonic() - started
        node_id = server.hypervisor_hostname
        node = tier.nodes[node_id]
        assert node["resource_class"] == resource_class
        assert server.compute_host == nova.compute_host(int(node["shard"].rsplit("-", 1)[1]))
        deployed = admin.baremetal.get_node(node_id)
        assert (deployed.provision_state, deployed.instance_id) == ("active", server.id)

        started = time.monotonic()
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=1, wait=120)
        gone = time.monotonic() - started
        available = gone + wait(
            lambda: admin.baremetal.get_node(node_id).provision_state == "available", 120, "available again"
        )
        assert admin.baremetal.get_node(node_id).instance_id is None
        print(f"\nboot to ACTIVE {boot:.1f} s; delete to gone {gone:.1f} s, to the node available {available:.1f} s")
    finally:
        admin.close()
        conn.close()


def test_stopping_nova_stops_every_process_and_starting_it_brings_them_all_back(tier: Tier) -> None:
    """`testbed stop nova` / `start nova`: every recorded PID, by PID, on the same port with the same data."""
    pids = tier.state.pids_of("nova")
    started = time.monotonic()
    lifecycle.stop_service(tier.workdir, "nova")
    stopped = time.monotonic() - started
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert not port_in_use(tier.api_port) and process.listeners(tier.api_port) == {}
    assert lifecycle.status(tier.workdir)["nova"]["running"] is False
    started = time.monotonic()
    state = lifecycle.start_service(tier.workdir, "nova")
    assert set(state.pids_of("nova")) == set(pids) and all(map(process.alive, state.pids_of("nova").values()))
    assert state.port_of("nova") == tier.api_port
    assert httpx.get(f"http://127.0.0.1:{tier.api_port}/v2.1/servers").status_code == 401
    print(
        f"\nstopping the {len(pids)} Nova processes {stopped:.1f} s; "
        f"starting them again {time.monotonic() - started:.1f} s"
    )


def test_down_leaves_no_process_and_no_port(tier: Tier) -> None:
    pids = processes(tier.workdir)
    ports = listening_ports(pids)
    assert len(ports) >= len(tier.state.services) + 1
    started = time.monotonic()
    lifecycle.down(tier.workdir)
    print(
        f"\ndown of the tier with nova ({len(pids)} processes, {len(ports)} ports): {time.monotonic() - started:.1f} s"
    )
    assert [pid for pid in pids if process.alive(pid)] == []
    assert {port: holders for port in ports if (holders := process.listeners(port))} == {}
