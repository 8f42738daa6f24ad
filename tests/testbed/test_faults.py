"""Fault injection against the real Ironic: each fault leaves the node as production would."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hammersmith.testbed.faults import FAULTS, OPERATOR_REASON, SCENARIOS
from tests.conftest import Testbed, hammersmith


def error_recorded(testbed: Testbed, name: str, text: str) -> bool:
    """The error is in the node's history (Ironic's power sync clears `last_error` within a minute)."""
    history = testbed.conn.baremetal.get(f"/nodes/{name}/history", microversion="1.78").json()["history"]
    return any(text in event["event"] for event in history)


def nodes_with(faults: dict[str, list[str]], *names: str) -> list[str]:
    return [node for node, applied in faults.items() if applied == list(names)]


def test_demo_scenario_covers_every_fault(demo_faults: dict[str, list[str]]) -> None:
    applied = {name for steps in demo_faults.values() for name in steps}
    assert applied == {name for name, f in FAULTS.items() if f.in_demo}
    assert len(demo_faults) == sum(k for _, k, _ in SCENARIOS["demo"])


def test_error_teardown(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    for name in nodes_with(demo_faults, "error-teardown"):
        node = testbed.node(name)
        assert node["provision_state"] == "error"
        assert error_recorded(testbed, name, "Failed to tear down")
        assert not node["is_maintenance"]
        assert node["network_interface"] == "noop"  # Neutron "came back": a retry can now succeed
        assert node["instance_id"] is None


def test_deploy_failed(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    for name in nodes_with(demo_faults, "deploy-failed"):
        node = testbed.node(name)
        assert node["provision_state"] == "deploy failed"
        assert error_recorded(testbed, name, "Validation of image href")
        assert node["deploy_interface"] == "fake" and not node["is_maintenance"]


def test_clean_failed_sets_ironic_maintenance(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    for name in nodes_with(demo_faults, "clean-failed"):
        node = testbed.node(name)
        assert node["provision_state"] == "clean failed"
        assert node["is_maintenance"] and node["fault"] == "clean failure"


def test_stuck_deploying_is_held_in_a_transient_state(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    (name,) = nodes_with(demo_faults, "stuck-deploying")
    raw = testbed.conn.baremetal.get(f"/nodes/{name}", microversion="1.78").json()
    assert raw["provision_state"] == "wait call-back" and raw["target_provision_state"] == "active"
    since = datetime.fromisoformat(raw["provision_updated_at"])
    assert datetime.now(UTC) - since > timedelta(minutes=110)


def test_dirty_port_keeps_a_tenant_vif(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    for name in nodes_with(demo_faults, "dirty-port"):
        node = testbed.node(name)
        assert node["provision_state"] == "available" and not node["is_maintenance"]
        (port,) = testbed.conn.baremetal.ports(details=True, node=name)
        assert port.internal_info["tenant_vif_port_id"]


def test_maintenance_without_reason(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    for name in nodes_with(demo_faults, "maintenance-no-reason"):
        node = testbed.node(name)
        assert node["is_maintenance"] and not node["maintenance_reason"] and not node["fault"]


def test_user_active(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    for name in nodes_with(demo_faults, "user-active"):
        node = testbed.node(name)
        assert node["provision_state"] == "active" and node["instance_id"]
        assert node["power_state"] == "power on"


def test_operator_maintenance_alone_and_combined(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    (alone,) = nodes_with(demo_faults, "operator-maintenance")
    node = testbed.node(alone)
    assert node["is_maintenance"] and node["maintenance_reason"] == OPERATOR_REASON
    assert node["provision_state"] == "available"
    (combined,) = nodes_with(demo_faults, "error-teardown", "operator-maintenance")
    node = testbed.node(combined)
    assert node["is_maintenance"] and node["maintenance_reason"] == OPERATOR_REASON
    assert node["provision_state"] == "error" and error_recorded(testbed, combined, "Failed to tear down")


def test_inject_by_node_and_by_count(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    free = sorted(
        n.name
        for n in testbed.conn.baremetal.nodes(details=True)
        if n.provision_state == "available" and not n.is_maintenance and n.name not in demo_faults
    )
    result = hammersmith("testbed", "inject", "dirty-port", "--node", free[-1], "--json", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {free[-1]: ["dirty-port"]}
    result = hammersmith("testbed", "inject", "maintenance-no-reason", "--count", "2", "--json", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)) == free[:2]
    again = hammersmith("testbed", "inject", "dirty-port", "--node", free[-1], cwd=testbed.workdir)
    assert again.returncode == 1 and "already carries ['dirty-port']" in again.stderr


def test_inject_rejects_unknown_fault_and_lists_faults(testbed: Testbed) -> None:
    result = hammersmith("testbed", "inject", "meteor-strike", cwd=testbed.workdir)
    assert result.returncode == 1
    assert "unknown fault 'meteor-strike'" in result.stderr and "Traceback" not in result.stderr
    listed = json.loads(hammersmith("testbed", "faults", "--json", cwd=testbed.workdir).stdout)
    assert {f["name"] for f in listed if "name" in f} == set(FAULTS)
