"""floating-ip-reaper against the full tier's real Neutron (and Blazar, Keystone): an idle floating IP of the users'
project is found once older than the grace, observed, then deleted and verified gone; a floating IP tagged to keep,
one tagged by Blazar beside another tag, one of an excluded project and one associated with a port are no finding
and stay. hammersmith logs in with its least-privilege account (clouds.yaml)."""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from openstack.network.v2.floating_ip import FloatingIP

from hammersmith.react.hammers import load
from hammersmith.testbed import lifecycle
from hammersmith.testbed.faults import Injector
from hammersmith.testbed.ironic import CLOUD_NAME
from tests.conftest import Testbed
from tests.react.crossservice import run
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER = "floating-ip-reaper"
FAULT = "idle-floating-ip"
BLAZAR_UNREAD = "Blazar's floating IPs could not be read: reservable addresses unknown (fails closed)"


def config(directory: Path, grace_hours: float, excluded: str) -> Path:
    """This hammer alone, in apply mode; rate and breaker out of the way (other tests' idle addresses count too)."""
    hammers = {name: "off" for name in load() if name != HAMMER} | {HAMMER: "apply"}
    policy = {
        "grace_minutes": 0,
        "floating_ip_grace_hours": grace_hours,
        "keep_tags": ["keep"],
        "excluded_projects": [excluded],
        "hammers": hammers,
        "rate": {"per_sweep": 100, "per_hour": 1000},
        "breaker": {"max_percent": 100, "max_actions": 100},
    }
    path = directory / f"hammersmith-{grace_hours:g}h.yaml"
    path.write_text(
        yaml.safe_dump({"state_dir": str(directory), "sites": {"full": {"cloud": CLOUD_NAME, "policy": policy}}})
    )
    return path


def associated(inj: Injector, public: str, project: str, stack: ExitStack) -> FloatingIP:
    """A floating IP on a port of the provisioning network, through a router of its own (Neutron associates only an
    address whose network a router reaches); `stack` removes everything again."""
    network = inj.conn.network
    router = network.create_router(
        name="fip-reaper-lab", project_id=project, external_gateway_info={"network_id": public}
    )
    stack.callback(network.delete_router, router)
    gateway = network.create_port(network_id=inj.state.network_id, name="fip-reaper-gw", project_id=project)
    stack.callback(network.delete_port, gateway, ignore_missing=True)
    network.add_interface_to_router(router, port_id=gateway.id)
    stack.callback(network.remove_interface_from_router, router, port_id=gateway.id)
    port = network.create_port(network_id=inj.state.network_id, name="fip-reaper-server", project_id=project)
    stack.callback(network.delete_port, port)
    fip = network.create_ip(floating_network_id=public, project_id=project, port_id=port.id)
    stack.callback(network.delete_ip, fip)
    return fip


def test_floating_ip_reaper_idle_floating_ip_is_deleted_and_kept_ones_are_left_alone(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    (name,) = inj.targets(FAULT, 1)
    inj.inject(FAULT, [name])
    network, project = inj.conn.network, inj.user_project_id()
    (idle,) = [ip for ip in network.ips() if (ip.description or "").startswith(f"{name}:")]
    public = inj.public_network()
    with ExitStack() as stack:
        stack.callback(network.delete_ip, idle, ignore_missing=True)
        staff = inj.cloud.identity.create_project(name=f"staff-{name}", domain_id="default")
        stack.callback(inj.cloud.identity.delete_project, staff)
        kept = {}
        for why, owner, tags in (
            ("keep", project, ["keep"]),
            ("blazar", project, ["blazar", f"reservation:{uuid.uuid4()}"]),  # Chameleon's JOIN let this one through
            ("excluded", staff.id, []),
        ):
            kept[why] = network.create_ip(floating_network_id=public, project_id=owner, description=f"{name}: {why}")
            stack.callback(network.delete_ip, kept[why])
            if tags:
                network.set_tags(kept[why], tags)
        kept["attached"] = associated(inj, public, project, stack)
        key = f"floating-ip/{idle.id}"
        others = {f"floating-ip/{ip.id}" for ip in kept.values()}

        young = run(full_testbed, config(tmp_path, 1, staff.name), "sweep")  # seconds old: within a 1 h grace
        assert key not in {f["node_uuid"] for f in young["findings"]}

        path = config(tmp_path, 0, staff.name)
        observed = run(full_testbed, path, "sweep")
        found = {f["node_uuid"]: f for f in observed["findings"]}
        assert found[key]["node"] == idle.floating_ip_address and not others & set(found)
        (action,) = [a for a in observed["actions"] if a["node_uuid"] == key]
        assert (action["mode"], action["outcome"]) == ("observe", "observed")
        assert action["reason"].startswith(f"would delete: floating IP {idle.floating_ip_address} associated with no")
        assert network.get_ip(idle.id).port_id is None  # still there

        applied = run(full_testbed, path, "sweep", "--apply")
        (action,) = [a for a in applied["actions"] if a["node_uuid"] == key]
        assert action["outcome"] == "fixed", action
        assert network.find_ip(idle.id) is None
        assert all(network.find_ip(ip.id) for ip in kept.values())
        assert not others & {a["node_uuid"] for a in applied["actions"]}

        rows = [r for r in run(full_testbed, path, "ledger", "--hammer", HAMMER) if r["node_uuid"] == key]
        assert [(r["mode"], r["outcome"]) for r in rows] == [("apply", "fixed"), ("observe", "observed")]
        assert rows[0]["before"]["floating_ip_address"] == idle.floating_ip_address
        assert rows[0]["before"]["port_id"] is None and rows[0]["before"]["project_id"] == project
        assert rows[0]["after"] == {"exists": False}


def test_floating_ip_reaper_while_blazar_cannot_be_read_no_floating_ip_is_deleted(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    """Blazar down: which addresses it reserves is unknown, so an idle floating IP is found but refused (fails
    closed); Neutron alone still reads in full."""
    (name,) = inj.targets(FAULT, 1)
    inj.inject(FAULT, [name])
    (idle,) = [ip for ip in inj.conn.network.ips() if (ip.description or "").startswith(f"{name}:")]
    key = f"floating-ip/{idle.id}"
    path = config(tmp_path, 0, "staff")
    lifecycle.stop_service(full_testbed.workdir, "blazar")
    try:
        swept = run(full_testbed, path, "sweep", "--apply")
        (action,) = [a for a in swept["actions"] if a["node_uuid"] == key]
        assert (action["outcome"], action["reason"]) == ("refused", BLAZAR_UNREAD)
        assert inj.conn.network.get_ip(idle.id).port_id is None
    finally:
        lifecycle.start_service(full_testbed.workdir, "blazar")
        inj.conn.network.delete_ip(idle, ignore_missing=True)
