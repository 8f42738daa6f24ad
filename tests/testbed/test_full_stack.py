"""The whole stack on this machine (`--with full`): every node reservable through Blazar and bootable through Nova,
the tier's budgets, and each full-tier fault produced through the services' own APIs."""

from __future__ import annotations

import os
import time

import pytest

from hammersmith.testbed import blazar, faults, lifecycle, nova
from hammersmith.testbed.faults import Injector
from tests.conftest import FULL_TESTBED_NODES, Testbed
from tests.testbed.test_full_tier import INSTALLED, processes
from tests.testbed.test_infra import listening_ports, loopback_only, rss_mb

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
#: the budget `docs/testbed.md` gives the whole tier
MEMORY_BUDGET_MB = 3072


def cpu_seconds(pids: set[int]) -> float:
    """User and system CPU time the processes have used so far (from /proc, in clock ticks)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def pss_mb(pids: set[int]) -> float:
    """Proportional set size: each shared page (the interpreter, libraries, every gunicorn's code) counted once
    over the processes that share it, so the sum is the memory the tier takes (RSS counts shared pages again
    for every process)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total / 1024


def test_every_service_runs_on_loopback_within_the_memory_budget(full_testbed: Testbed) -> None:
    """Each service of `full` is up, only on 127.0.0.1; the tier's resident memory and idle CPU are printed."""
    state = full_testbed.state
    assert set(state.services) == set(lifecycle.SERVICES)
    assert set(state.pids_of("blazar")) == {"api", "manager"}
    pids = processes(full_testbed.workdir)
    ports = listening_ports(pids)
    assert {state.port, *(state.port_of(name) for name in state.services)} <= ports
    assert all(loopback_only(port) for port in ports)
    rss, pss = rss_mb(pids), pss_mb(pids)
    before, started = cpu_seconds(pids), time.monotonic()
    time.sleep(20)
    idle = (cpu_seconds(pids) - before) / (time.monotonic() - started) / (os.cpu_count() or 1) * 100
    tier = f"full tier, {FULL_TESTBED_NODES} nodes"
    print(f"\n{tier}: {pss:.0f} MB PSS ({rss:.0f} MB RSS) over {len(pids)} processes, idle CPU {idle:.1f} %")
    assert pss <= MEMORY_BUDGET_MB


def test_every_node_is_a_reservable_blazar_host_on_a_compute_host_of_its_own(full_testbed: Testbed) -> None:
    admin = full_testbed.conn.project
    nodes = {n.id: n for n in full_testbed.conn.baremetal.nodes(details=True)}
    hosts = blazar.client(admin).get("/os-hosts").json()["hosts"]
    assert sorted(h["hypervisor_hostname"] for h in hosts) == sorted(nodes)
    assert all(h["reservable"] and h["node_type"] == nodes[h["hypervisor_hostname"]].resource_class for h in hosts)
    assert len({h["service_name"] for h in hosts}) == len(nodes) >= 4  # one compute host each: Blazar's unit
    freepool = admin.compute.find_aggregate(blazar.FREEPOOL, ignore_missing=False)
    assert sorted(freepool.hosts) == sorted(h["service_name"] for h in hosts)
    flavors = {f.name for f in admin.compute.flavors()}
    assert {nova.flavor_name(n.resource_class) for n in nodes.values()} <= flavors


def test_a_lease_start_that_fails_leaves_the_lease_in_error_and_the_host_in_the_free_pool(inj: Injector) -> None:
    (node,) = inj.targets("lease-start-failed", 1)
    inj.inject("lease-start-failed", [node])
    api = blazar.client(inj.cloud)
    (lease,) = [lease for lease in api.get("/leases").json()["leases"] if lease["name"] == f"experiment-{node}"]
    events = {event["event_type"]: event["status"] for event in lease["events"]}
    assert (lease["status"], events["start_lease"]) == ("ERROR", "ERROR")
    assert lease["project_id"] == inj.user_project_id()
    freepool = inj.cloud.compute.find_aggregate(blazar.FREEPOOL, ignore_missing=False)
    assert inj.compute_host(inj.bm.get_node(node).id) in freepool.hosts  # the next lease of it can start
    inj.release(node)


def test_a_launch_failure_is_a_server_in_error_of_the_named_project(inj: Injector) -> None:
    (name,) = inj.targets("launch-failed", 1)
    inj.inject("launch-failed", [name])
    (server,) = [s for s in inj.cloud.compute.servers(all_projects=True, name=name)]
    assert server.status == "ERROR" and server.project_id == inj.user_project_id()
    assert "No valid host" in (server.fault or {}).get("message", "")


def test_a_retired_node_stays_reservable_in_blazar(inj: Injector) -> None:
    (node,) = inj.targets("retired-reservable", 1)
    inj.inject("retired-reservable", [node])
    found = inj.bm.get_node(node)
    assert found.is_retired and found.provision_state == "manageable"
    host = next(
        h for h in blazar.client(inj.cloud).get("/os-hosts").json()["hosts"] if h["hypervisor_hostname"] == found.id
    )
    assert host["reservable"]


def test_a_disabled_compute_host_is_made_not_reservable_by_blazars_monitor_and_back(inj: Injector) -> None:
    (node,) = inj.targets("host-not-reservable", 1)
    inj.inject("host-not-reservable", [node])  # waits until Blazar says so
    node_id = inj.bm.get_node(node).id
    host = next(
        h for h in blazar.client(inj.cloud).get("/os-hosts").json()["hosts"] if h["hypervisor_hostname"] == node_id
    )
    assert not host["reservable"]
    service = inj.compute_service(node_id)
    inj.cloud.compute.enable_service(service, service.host, service.binary)
    inj.wait_reservable(node_id, True)
    inj.release(node)


def test_an_undead_instance_is_deployed_in_ironic_and_gone_from_nova(inj: Injector) -> None:
    (node,) = inj.targets("undead-instance", 1)
    inj.inject("undead-instance", [node])
    found = inj.bm.get_node(node)
    assert found.provision_state == "active" and found.instance_id
    assert inj.cloud.compute.find_server(found.instance_id, all_projects=True) is None
    assert not inj.compute_service(found.id).is_forced_down  # the compute service is back


def test_a_neutron_port_holds_the_mac_of_an_ironic_port(inj: Injector) -> None:
    (node,) = inj.targets("conflicting-mac", 1)
    inj.inject("conflicting-mac", [node])
    mac = next(inj.bm.ports(node=node, details=True)).address
    (port,) = inj.conn.network.ports(mac_address=mac)
    assert port.network_id == inj.state.network_id and port.name == f"leftover-{node}"
    assert inj.bm.get_node(node).provision_state == "available"  # nothing shows until the next deploy


def test_a_resource_provider_outlives_its_node_and_a_floating_ip_idles(inj: Injector) -> None:
    (rp_fault,) = inj.targets("orphan-resource-provider", 1)
    (fip_fault,) = inj.targets("idle-floating-ip", 1)
    nodes = {n.id for n in inj.bm.nodes()}
    before = {p.name for p in inj.cloud.placement.resource_providers()}
    inj.inject("orphan-resource-provider", [rp_fault])
    inj.inject("idle-floating-ip", [fip_fault])
    (orphan,) = {p.name for p in inj.cloud.placement.resource_providers()} - before
    assert orphan not in nodes
    ips = [ip for ip in inj.conn.network.ips() if ip.description.startswith(fip_fault)]
    assert len(ips) == 1 and ips[0].port_id is None and ips[0].project_id == inj.user_project_id()
    assert inj.state.faults[rp_fault] == ["orphan-resource-provider"]


def test_a_fault_through_a_service_the_testbed_does_not_run_is_refused(testbed: Testbed) -> None:
    with pytest.raises(Exception, match="produced through blazar") as refused:
        lifecycle.inject(testbed.workdir, "lease-start-failed")
    assert "--with blazar" in str(getattr(refused.value, "hint", ""))
    assert faults.FAULTS["idle-floating-ip"].target == "site"
