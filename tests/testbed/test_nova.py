"""The full tier's Nova on Ironic, real: one nova-compute per Ironic shard, each node its own compute host."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from openstack.connection import Connection

from hammersmith.testbed import fleet, glance, keystone, lifecycle, nova, placement, process
from hammersmith.testbed.ironic import State, free_port, port_in_use
from hammersmith.testbed.mariadb import MariaDB
from hammersmith.testbed.rabbitmq import SBIN, RabbitMQ
from tests.conftest import _quiet_step

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (shutil.which("mariadbd", path="/usr/sbin:/usr/bin") and (SBIN / "rabbitmq-server").exists()),
        reason="not installed: mariadb-server, rabbitmq-server (scripts/setup --test installs the Debian packages)",
    ),
]
NODES = 4
#: one nova-compute per node: each node is a compute host of its own, as upstream Blazar needs
COMPUTES = 4


@dataclass
class Tier:
    state: State
    nova: nova.Nova
    api_port: int
    #: Ironic node id -> name, resource class and the shard it was given
    nodes: dict[str, dict[str, str]]
    #: every process this fixture started, by name -> (PID, the directory `process.owned` checks)
    pids: dict[str, tuple[int, Path]] = field(default_factory=dict)

    def admin(self) -> Connection:
        assert self.state.auth_url
        return keystone.admin(self.state.auth_url, self.state.passwords["admin"])


def rss_mib(pids: list[int]) -> float:
    """Resident memory of these process groups (gunicorn's master and worker; a nova service and its forks)."""
    total_kib = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and process.group(int(entry.name)) in pids:
            try:
                status = Path(f"/proc/{entry.name}/status").read_text()
            except OSError:
                continue
            total_kib += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total_kib / 1024


def timed(figures: dict[str, float], name: str, since: float) -> None:
    figures[name] = time.monotonic() - since


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    """Ironic, Keystone and Neutron from `lifecycle.up`; then MariaDB, RabbitMQ, Placement, Glance and Nova
    started here, each stopped by its PID at the end, before `lifecycle.down`."""
    workdir = tmp_path_factory.mktemp("nova-tier")
    root = workdir / "full"
    figures: dict[str, float] = {}
    started = time.monotonic()
    state = lifecycle.up(workdir, NODES, free_port(), _quiet_step, {"keystone", "neutron"})
    timed(figures, "lifecycle.up (Ironic, Keystone, Neutron)", started)
    assert state.auth_url
    database, broker = MariaDB(root / "mariadb"), RabbitMQ(root / "rabbitmq")
    services = {"placement": placement.Placement(root / "placement"), "glance": glance.Glance(root / "glance")}
    compute = nova.Nova(root / "nova")
    pids: dict[str, tuple[int, Path]] = {}
    try:
        cold = not (nova.venv_dir() / ".hammersmith-complete").exists()
        started = time.monotonic()
        nova.ensure_venv()
        timed(figures, f"Nova venv install ({'cold' if cold else 'cached'})", started)

        started = time.monotonic()
        database.prepare()
        pids["mariadb"] = (database.start(free_port()), database.data)
        broker.prepare()
        pids["rabbitmq"] = (broker.start(free_port()), broker.dir)
        timed(figures, "MariaDB and RabbitMQ prepare + start", started)
        urls = {name: database.create_database(name) for name in (*nova.DATABASES, "placement", "glance")}

        ports = {name: free_port() for name in ("placement", "glance", "nova")}
        passwords = {**state.passwords, **{user: secrets.token_urlsafe(18) for user in ("placement", "glance", "nova")}}
        keystone.register(
            state.auth_url,
            passwords,
            {
                placement.SERVICE_TYPE: f"http://127.0.0.1:{ports['placement']}",
                glance.SERVICE_TYPE: f"http://127.0.0.1:{ports['glance']}",
                "compute": f"http://127.0.0.1:{ports['nova']}/v2.1",
            },
            {placement.USER: placement.ROLES, glance.USER: glance.ROLES, nova.USER: nova.ROLES},
        )
        state.passwords = passwords
        for name, server in services.items():
            started = time.monotonic()
            server.prepare(state.auth_url, passwords[name], urls[name])
            pids[name] = (server.start(ports[name]), server.dir)
            timed(figures, f"{name} prepare + start", started)

        admin = fleet.connect(state)
        try:
            ironic_nodes = sorted(admin.baremetal.nodes(details=True), key=lambda n: n.name)
            shards = nova.assign_shards(admin.baremetal, [n.id for n in ironic_nodes], COMPUTES)
        finally:
            admin.close()
        nodes = {
            n.id: {"name": n.name, "resource_class": n.resource_class, "shard": shards[n.id]} for n in ironic_nodes
        }

        started = time.monotonic()
        compute.prepare(
            state.auth_url, passwords, {name: urls[name] for name in nova.DATABASES}, broker.transport_url, COMPUTES
        )
        timed(figures, "nova prepare (configs, 4 nova-manage syncs)", started)
        started = time.monotonic()
        for name, pid in compute.start(ports["nova"]).items():
            pids[f"nova-{name}"] = (pid, compute.dir)
        timed(figures, "nova start (to the API's 401)", started)
        bed = Tier(state, compute, ports["nova"], nodes, pids)
        conn = bed.admin()
        try:
            compute.wait_for_hypervisors(conn, NODES)
        finally:
            conn.close()
        timed(figures, "nova start to a hypervisor per node (mapped into the cell)", started)
        print()
        for name, seconds in figures.items():
            print(f"{name}: {seconds:.1f} s")
        nova_pids = {name: pid for name, (pid, _) in pids.items() if name.startswith("nova-")}
        each = ", ".join(f"{name} {rss_mib([pid]):.0f}" for name, pid in nova_pids.items())
        print(f"RSS of the {len(nova_pids)} Nova processes: {rss_mib(list(nova_pids.values())):.0f} MiB ({each})")
        yield bed
    finally:
        compute.stop({name: pid for name, (pid, _) in pids.items() if name.startswith("nova-")})
        for name in ("glance", "placement"):
            if name in pids and process.owned(*pids[name]):
                process.stop(pids[name][0])
        broker.stop(pids.get("rabbitmq", (None, None))[0])
        database.stop(pids.get("mariadb", (None, None))[0])
        lifecycle.down(workdir)


def wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check` every half second until it holds; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {what} within {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def test_the_compute_api_refuses_requests_without_a_token(tier: Tier) -> None:
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
    assert sorted(node["shard"] for node in tier.nodes.values()) == [nova.shard(i) for i in range(1, COMPUTES + 1)]
    assert services == {nova.compute_host(i) for i in range(1, COMPUTES + 1)}


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
    """Flavor `baremetal` asks for one unit of node-001's resource class and nothing else; the image is
    a 1 MiB raw file in Glance; the network is the testbed's Neutron network (given a subnet)."""
    resource_class = next(n["resource_class"] for n in tier.nodes.values() if n["name"] == fleet.node_name(1))
    conn = tier.admin()
    admin = fleet.connect(tier.state)
    try:
        flavor = conn.compute.create_flavor(name="baremetal", ram=1024, vcpus=1, disk=10)
        conn.compute.create_flavor_extra_specs(
            flavor,
            {
                f"resources:CUSTOM_{resource_class.upper()}": "1",
                "resources:VCPU": "0",
                "resources:MEMORY_MB": "0",
                "resources:DISK_GB": "0",
            },
        )
        # Nova boots only on a network with a subnet; no DHCP agent runs
        admin.network.create_subnet(
            network_id=tier.state.network_id, ip_version=4, cidr="198.51.100.0/24", enable_dhcp=False
        )
        image = conn.image.create_image(
            name="hammersmith-raw", data=os.urandom(1024 * 1024), disk_format="raw", container_format="bare"
        )
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


def test_stopping_nova_by_pid_leaves_no_process_and_no_port(tier: Tier) -> None:
    pids = {name: pid for name, (pid, _) in tier.pids.items() if name.startswith("nova-")}
    assert all(process.owned(pid, tier.nova.dir) for pid in pids.values())
    started = time.monotonic()
    tier.nova.stop({name.removeprefix("nova-"): pid for name, pid in pids.items()})
    print(f"\nstopping the {len(pids)} Nova processes: {time.monotonic() - started:.1f} s")
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert not port_in_use(tier.api_port) and process.listeners(tier.api_port) == {}
