"""The Keystone tier against real Keystone, Ironic and Neutron: hammersmith logs in with its own account."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from hammersmith.testbed import fleet, keystone, lifecycle, process
from hammersmith.testbed.ironic import CLOUD_NAME, Ironic, free_port
from tests.conftest import KEYSTONE_TESTBED_NODES, Testbed, _quiet_step, hammersmith

NODES = 5


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A tier of its own: these tests stop Keystone and change passwords."""
    workdir = tmp_path_factory.mktemp("keystone-tier")
    state = lifecycle.up(workdir, NODES, free_port(), _quiet_step, {"keystone", "neutron"})
    try:
        yield Testbed(workdir, state)
    finally:
        lifecycle.down(workdir)


def account(bed: Testbed) -> Connection:
    """hammersmith's own account, exactly as clouds.yaml describes it."""
    config = OpenStackConfig(config_files=[str(bed.workdir / "clouds.yaml")], load_envvars=False)
    return Connection(config=config.get_one(cloud=CLOUD_NAME))


def snapshot(bed: Testbed) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = hammersmith("snapshot", "--json", cwd=bed.workdir)
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def test_clouds_yaml_logs_in_as_hammersmith_with_endpoints_from_the_catalog(bed: Testbed) -> None:
    cloud = yaml.safe_load((bed.workdir / "clouds.yaml").read_text())["clouds"][CLOUD_NAME]
    assert cloud["auth_type"] == "v3password" and cloud["region_name"] == "RegionOne"
    assert cloud["identity_api_version"] == "3"
    assert cloud["auth"] == {
        "auth_url": bed.state.auth_url,
        "username": "hammersmith",
        "password": bed.state.passwords["hammersmith"],
        "project_name": "service",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }
    assert not [key for key in cloud if key.endswith("endpoint_override")]


def test_services_refuse_requests_without_a_token(bed: Testbed) -> None:
    assert httpx.get(f"{bed.state.url}/v1/nodes").status_code == 401
    assert httpx.get(f"{bed.state.neutron_url}v2.0/ports").status_code == 401


def test_snapshot_reads_ironic_and_neutron_after_one_login(bed: Testbed) -> None:
    result, summary = snapshot(bed)
    assert result.returncode == 0, result.stderr
    assert summary["complete"] and summary["counts"]["nodes"] == NODES
    assert {s: summary["services"][s]["status"] for s in ("ironic", "neutron")} == {"ironic": "ok", "neutron": "ok"}
    assert summary["requests"]["keystone"] == 3  # the login, then the projects and users listings (names, owners)
    assert summary["services"]["keystone"]["status"] == "ok" and summary["counts"]["projects"] >= 1


def test_hammersmith_account_reads_everything(bed: Testbed) -> None:
    """Ironic's `service` role with elevated access sees all nodes, ports, allocations; Neutron's `admin`
    role is the only one that sees other projects' floating IPs."""
    admin = bed.conn
    assert bed.state.auth_url
    other = keystone.admin(bed.state.auth_url, bed.state.passwords["admin"]).identity.create_project(
        name="experiments", domain_id="default"
    )
    public = admin.network.create_network(
        name="public", provider_network_type="flat", provider_physical_network="public", is_router_external=True
    )
    admin.network.create_subnet(network_id=public.id, cidr="192.0.2.0/24", ip_version=4)
    admin.network.create_ip(floating_network_id=public.id, project_id=other.id)
    admin.network.create_port(network_id=bed.state.network_id, project_id=other.id, name="experiment-port")
    admin.baremetal.create_allocation(resource_class="no-such-class", name="experiment")  # touches no node

    mine = account(bed)
    assert len(list(mine.baremetal.nodes())) == NODES
    assert len(list(mine.baremetal.ports())) == NODES
    assert [a.name for a in mine.baremetal.allocations()] == ["experiment"]
    assert "experiment-port" in {p.name for p in mine.network.ports()}
    assert [ip.project_id for ip in mine.network.ips()] == [other.id]


def test_hammersmith_account_does_what_hammers_do(bed: Testbed) -> None:
    """Maintenance, extra, provision actions and VIF detach, all through the `service` role."""
    mine = account(bed).baremetal
    faults = ("stuck-deploying", "dirty-port", "user-active")
    stuck, dirty, active = (next(iter(lifecycle.inject(bed.workdir, fault))) for fault in faults)
    healthy = min({fleet.node_name(i) for i in range(1, NODES + 1)} - {stuck, dirty, active})

    assert mine.set_node_maintenance(healthy, reason="hammersmith: test").is_maintenance
    assert not mine.unset_node_maintenance(healthy).is_maintenance
    assert mine.patch_node(healthy, [{"op": "add", "path": "/extra/hammersmith", "value": "t"}]).extra
    for action, state in (("manage", "manageable"), ("inspect", "manageable"), ("provide", "available")):
        assert mine.set_node_provision_state(healthy, action, wait=True, timeout=60).provision_state == state

    # as the stuck-transient hammer does: aborting `wait call-back` needs API 1.110, newer than the SDK's
    abort = mine.put(f"/nodes/{stuck}/states/provision", json={"target": "abort"}, microversion="1.110")
    assert abort.status_code == 202, abort.text
    assert fleet.wait_for(bed.conn, [stuck], {"deploy failed"}, 60)[stuck]["provision_state"] == "deploy failed"
    assert mine.set_node_provision_state(active, "deleted", wait=True, timeout=60).provision_state == "available"
    (vif,) = mine.list_node_vifs(dirty)
    mine.detach_vif_from_node(dirty, vif, ignore_missing=False)
    assert mine.list_node_vifs(dirty) == []


def test_status_shows_keystone(bed: Testbed) -> None:
    result = hammersmith("testbed", "status", "--json", cwd=bed.workdir)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["keystone"] == {"url": bed.state.auth_url, "pid": bed.state.pid_of("keystone"), "running": True}
    assert status["neutron"]["running"] and status["nodes"] == NODES


def test_wrong_password_is_a_clear_error_without_the_password(bed: Testbed) -> None:
    right = bed.state.passwords["hammersmith"]
    lifecycle.set_password(bed.workdir, "hammersmith", "not-the-one-in-clouds-yaml")
    try:
        result, _ = snapshot(bed)
    finally:
        lifecycle.set_password(bed.workdir, "hammersmith", right)
    assert result.returncode != 0
    assert "login failed" in result.stderr and "Traceback" not in result.stderr
    assert right not in result.stdout + result.stderr
    _, summary = snapshot(bed)
    assert summary["services"]["ironic"]["status"] == "ok"


def test_keystone_outage_then_back_with_the_same_data(bed: Testbed) -> None:
    pid = lifecycle.stop_service(bed.workdir, "keystone").pid_of("keystone")
    assert pid is None and not process.alive(bed.state.pid_of("keystone"))
    try:
        down, _ = snapshot(bed)
        assert down.returncode != 0 and "login failed" in down.stderr
    finally:
        state = lifecycle.start_service(bed.workdir, "keystone")
    assert process.alive(state.pid_of("keystone")) and state.port_of("keystone") == bed.state.port_of("keystone")
    _, summary = snapshot(bed)
    assert summary["services"]["ironic"]["status"] == "ok"
    assert summary["counts"]["nodes"] == NODES  # the same accounts, catalog and token keys


def test_keystone_testbed_fixture(keystone_testbed: Testbed) -> None:
    """The session-wide tier other modules use: Keystone, Neutron, KEYSTONE_TESTBED_NODES nodes."""
    _, state = lifecycle.running(keystone_testbed.workdir)  # on disk: other modules may have restarted a service
    assert (
        process.alive(state.pid_of("keystone")) and process.alive(state.pid_of("neutron")) and process.alive(state.pid)
    )
    assert len(list(account(keystone_testbed).baremetal.nodes())) == KEYSTONE_TESTBED_NODES


def test_keystone_alone_then_down_by_pid(tmp_path: Path) -> None:
    """`--with keystone` without Neutron: Ironic behind Keystone, no network in the catalog."""
    port = str(free_port())  # not Ironic's default 6385: another testbed on this machine may hold it
    result = hammersmith("testbed", "up", "--nodes", "2", "--port", port, "--with", "keystone", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    state = Ironic(lifecycle.testbed_dir(tmp_path)).load_state()
    assert state is not None and state.port_of("neutron") is None
    try:
        snap = json.loads(hammersmith("snapshot", "--json", cwd=tmp_path).stdout)
        assert snap["services"]["ironic"]["status"] == "ok" and snap["services"]["neutron"]["status"] == "absent"
        assert snap["counts"]["nodes"] == 2
    finally:
        down = hammersmith("testbed", "down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert not process.alive(state.pid) and not process.alive(state.pid_of("keystone"))
