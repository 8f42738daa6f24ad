"""Pure logic of the checks and hands-off rules, on hand-built snapshots (no service needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hammersmith.cloud.snapshot import ServiceRead, Snapshot
from hammersmith.config import Policy
from hammersmith.detect import checks
from hammersmith.detect.handsoff import hands_off

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def node(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "uuid": f"uuid-{name}",
        "name": name,
        "provision_state": "available",
        "maintenance": False,
        "maintenance_reason": None,
        "fault": None,
        "instance_uuid": None,
        "reservation": None,
        "last_error": None,
        "resource_class": "compute",
        "provision_updated_at": None,
        **fields,
    }


def snap(nodes: list[dict[str, Any]], ports: list[dict[str, Any]] | None = None, ironic: str = "ok") -> Snapshot:
    data = {"nodes": nodes if ironic == "ok" else None, "ports": ports or [] if ironic == "ok" else None}
    return Snapshot("lab", NOW, NOW, data, {"ironic": ServiceRead(ironic)})  # type: ignore[arg-type]


def names(report: checks.Report, check: str) -> list[str]:
    return [f.node_name for f in report.findings if f.check == check]


def test_stuck_respects_the_threshold() -> None:
    old = (NOW - timedelta(minutes=61)).isoformat()
    young = (NOW - timedelta(minutes=59)).isoformat()
    report = checks.run(
        snap(
            [
                node("a", provision_state="deploying", provision_updated_at=old),
                node("b", provision_state="deploying", provision_updated_at=young),
                node("c", provision_state="active", provision_updated_at=old),
            ]
        ),
        Policy(),
    )
    assert names(report, "stuck") == ["a"]
    assert names(
        checks.run(
            snap([node("b", provision_state="clean wait", provision_updated_at=young)]), Policy(stuck_after_minutes=30)
        ),
        "stuck",
    ) == ["b"]


def test_dirty_port_looks_at_every_port_not_only_the_first() -> None:
    ports = [
        {"node_uuid": "uuid-a", "address": "52:54:00:00:00:01", "internal_info": {}},
        {"node_uuid": "uuid-a", "address": "52:54:00:00:00:02", "internal_info": {"tenant_vif_port_id": "v"}},
    ]
    report = checks.run(snap([node("a")], ports), Policy())
    assert names(report, "dirty-port") == ["a"]
    assert "52:54:00:00:00:02 -> VIF v" in report.findings[0].detail


def test_error_teardown_matches_the_state_even_after_last_error_is_cleared() -> None:
    report = checks.run(
        snap(
            [
                node("a", provision_state="error", last_error="Failed to tear down: x"),
                node("b", provision_state="error", last_error=None),
                node("c", provision_state="active", last_error="Failed to tear down: old news"),
            ]
        ),
        Policy(),
    )
    assert names(report, "error-teardown") == ["a", "b"]
    assert "cleared by Ironic's power sync" in report.findings[1].detail


def test_maintenance_set_by_ironic_or_hammersmith_is_not_an_operators() -> None:
    policy = Policy()
    assert (
        hands_off(node("a", maintenance=True, maintenance_reason="disk swap (bob)"), policy)
        == "operator maintenance: disk swap (bob)"
    )
    ironic = {"maintenance": True, "fault": "clean failure", "last_error": "x"}
    assert hands_off(node("b", **ironic, maintenance_reason="x"), policy) is None  # Ironic's own words
    assert hands_off(node("b", **ironic, maintenance_reason="y (ann)"), policy) == "operator maintenance: y (ann)"
    assert hands_off(node("c", maintenance=True, maintenance_reason="hammersmith: gave up"), policy) is None
    assert hands_off(node("d", provision_state="active", instance_uuid="i-1"), policy) == "user instance i-1"
    assert hands_off(node("e", reservation="conductor-1"), policy) == "locked by conductor conductor-1"


def test_exemptions_by_name_uuid_and_resource_class() -> None:
    policy = Policy(exempt_nodes=["a", "uuid-b"], exempt_resource_classes=["gpu"])
    assert hands_off(node("a"), policy) == "exempt by site policy"
    assert hands_off(node("b"), policy) == "exempt by site policy"
    assert hands_off(node("c", resource_class="gpu"), policy) == "resource class gpu exempt by site policy"


def test_checks_do_not_run_on_incomplete_data() -> None:
    report = checks.run(snap([], ironic="incomplete"), Policy())
    assert report.findings == []
    assert set(report.skipped) == set(checks.CHECKS)
    assert all("incomplete data from ironic" in why for why in report.skipped.values())


def test_every_builtin_check_has_a_module_a_doc_and_a_test() -> None:
    registered = checks.load()
    here = Path(__file__).read_text() + (Path(__file__).parent / "test_checks.py").read_text()
    for name, chk in registered.items():
        assert chk.doc, f"check {name} needs a docstring"
        assert f'"{name}"' in here, f"check {name} has no test naming it"
