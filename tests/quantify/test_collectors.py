"""Each collector over a fresh registry: the families, labels and values it builds from a snapshot."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hammersmith.quantify.collectors import load
from hammersmith.quantify.telemetry import LedgerView, Telemetry
from tests.quantify.conftest import node, snapshot


def registry_for(name: str, telemetry: Telemetry) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(load()[name](telemetry))
    return registry


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry(["lab"])


def test_ironic_node_series_is_openstack_exporter_compatible(telemetry: Telemetry) -> None:
    nodes = [
        node("n1"),
        node(
            "n2", "deploy failed", last_error="boom", maintenance=True, provision_updated_at="2026-11-25T11:00:00+00:00"
        ),
        node("n3", "active", power_state="power on", resource_class="gpu", provision_updated_at=None),
    ]
    telemetry.record(snapshot(nodes=nodes), [], None)
    r = registry_for("ironic", telemetry)
    labels = {
        "site": "lab",
        "id": "uuid-n2",
        "name": "n2",
        "provision_state": "deploy failed",
        "power_state": "power off",
        "maintenance": "true",
        "console_enabled": "false",
        "resource_class": "baremetal",
        "deploy_kernel": "k",
        "deploy_ramdisk": "r",
        "retired": "false",
        "retired_reason": "",
    }
    assert r.get_sample_value("openstack_ironic_node", labels) == 1
    count = {"site": "lab", "provision_state": "available", "maintenance": "false", "resource_class": "baremetal"}
    assert r.get_sample_value("hammersmith_ironic_nodes", count) == 1
    assert r.get_sample_value("hammersmith_ironic_nodes", {**count, "resource_class": "gpu"}) is None
    gpu = {"site": "lab", "provision_state": "active", "maintenance": "false", "resource_class": "gpu"}
    assert r.get_sample_value("hammersmith_ironic_nodes", gpu) == 1
    assert r.get_sample_value("hammersmith_ironic_node_last_error", {"site": "lab", "id": "uuid-n2", "name": "n2"}) == 1
    assert r.get_sample_value("hammersmith_ironic_node_last_error", {"site": "lab", "id": "uuid-n1", "name": "n1"}) == 0
    since = r.get_sample_value(
        "hammersmith_ironic_node_provision_state_since_timestamp_seconds",
        {"site": "lab", "id": "uuid-n2", "name": "n2", "provision_state": "deploy failed"},
    )
    assert since == datetime(2026, 11, 25, 11, tzinfo=UTC).timestamp()
    # no provision_updated_at yet (never changed state): the node's creation time
    created = r.get_sample_value(
        "hammersmith_ironic_node_provision_state_since_timestamp_seconds",
        {"site": "lab", "id": "uuid-n3", "name": "n3", "provision_state": "active"},
    )
    assert created == datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def test_ironic_incomplete_snapshot_exports_no_node_data(telemetry: Telemetry) -> None:
    """Partial data must not look like an empty fleet: the series go away, and freshness says why."""
    telemetry.record(snapshot(incomplete=("ironic",)), [], None)
    r = registry_for("ironic", telemetry)
    assert list(r.collect())[0].samples == []


def test_nova_servers_by_status(telemetry: Telemetry) -> None:
    servers = [{"id": "s1", "status": "ACTIVE"}, {"id": "s2", "status": "ERROR"}, {"id": "s3", "status": "ACTIVE"}]
    telemetry.record(snapshot(servers=servers), [], None)
    r = registry_for("nova", telemetry)
    assert r.get_sample_value("hammersmith_nova_servers", {"site": "lab", "status": "ACTIVE"}) == 2
    assert r.get_sample_value("hammersmith_nova_servers", {"site": "lab", "status": "ERROR"}) == 1


def test_nova_absent_from_catalog_exports_nothing(telemetry: Telemetry) -> None:
    telemetry.record(snapshot(nodes=[node("n1")]), [], None)
    assert list(registry_for("nova", telemetry).collect())[0].samples == []


def test_neutron_ports_and_floating_ips_bound_or_idle(telemetry: Telemetry) -> None:
    ports = [
        {"id": "p1", "device_id": "server-1", "binding:vif_type": "other"},
        {"id": "p2", "device_id": "", "binding:vif_type": "unbound"},
        {"id": "p3", "device_id": "node-1", "binding:vif_type": "binding_failed"},
    ]
    fips = [{"id": "f1", "port_id": "p1"}, {"id": "f2", "port_id": None}, {"id": "f3", "port_id": None}]
    telemetry.record(snapshot(network_ports=ports, floating_ips=fips), [], None)
    r = registry_for("neutron", telemetry)
    for state, count in {"bound": 1, "idle": 1, "binding_failed": 1}.items():
        assert r.get_sample_value("hammersmith_neutron_ports", {"site": "lab", "state": state}) == count
    assert r.get_sample_value("hammersmith_neutron_floating_ips", {"site": "lab", "state": "associated"}) == 1
    assert r.get_sample_value("hammersmith_neutron_floating_ips", {"site": "lab", "state": "idle"}) == 2


def test_placement_providers(telemetry: Telemetry) -> None:
    telemetry.record(snapshot(resource_providers=[{"uuid": "a"}, {"uuid": "b"}]), [], None)
    r = registry_for("placement", telemetry)
    assert r.get_sample_value("hammersmith_placement_resource_providers", {"site": "lab"}) == 2


def blazar_lease(lease_id: str, name: str, status: str, start: str = "UNDONE", **fields: Any) -> dict[str, Any]:
    """A lease as Blazar 18's GET /leases returns it: its events inside (start_lease, before_end_lease, end_lease)."""
    return {
        "id": lease_id,
        "name": name,
        "project_id": "p-ops" if "maint" in name else "p-user",
        "user_id": "u1",
        "start_date": "2026-11-30T10:00:00.000000",
        "end_date": "2026-11-30T18:00:00.000000",
        "status": status,
        "degraded": False,
        "trust_id": "t1",
        "reservations": [{"id": f"r-{lease_id}", "lease_id": lease_id, "resource_type": "physical:host"}],
        "events": [
            {"id": f"e1-{lease_id}", "lease_id": lease_id, "event_type": "start_lease", "status": start},
            {"id": f"e2-{lease_id}", "lease_id": lease_id, "event_type": "before_end_lease", "status": "UNDONE"},
            {"id": f"e3-{lease_id}", "lease_id": lease_id, "event_type": "end_lease", "status": "UNDONE"},
        ],
        **fields,
    }


def blazar_host(host_id: str, reservable: object, **extra_capabilities: str) -> dict[str, Any]:
    """A host as GET /os-hosts returns it: extra capabilities are top-level keys of the host."""
    return {
        "id": host_id,
        "hypervisor_hostname": f"uuid-n{host_id}",
        "service_name": f"ironic-{host_id}",
        "vcpus": 48,
        "memory_mb": 196608,
        "local_gb": 400,
        "reservable": reservable,
        "disabled": False,
        **extra_capabilities,
    }


def test_blazar_hosts_per_node_type_and_leases(telemetry: Telemetry) -> None:
    hosts = [
        blazar_host("1", True, node_type="compute_skylake"),
        blazar_host("2", False, node_type="compute_skylake"),
        blazar_host("3", "True", node_type="gpu_rtx_6000", gpu_model="RTX 6000"),
        blazar_host("4", False),  # no node_type extra capability
    ]
    leases = [blazar_lease("l1", "exp-1", "ACTIVE", "DONE"), blazar_lease("l2", "exp-2", "ERROR", "ERROR")]
    telemetry.record(
        snapshot(blazar_hosts=hosts, leases=[*leases, blazar_lease("l3", "exp-3", "ACTIVE", "DONE")]), [], None
    )
    r = registry_for("blazar", telemetry)

    def hosts_of(reservable: str, node_type: str) -> float | None:
        labels = {"site": "lab", "reservable": reservable, "node_type": node_type}
        return r.get_sample_value("hammersmith_blazar_hosts", labels)

    assert (hosts_of("true", "compute_skylake"), hosts_of("false", "compute_skylake")) == (1, 1)
    assert (hosts_of("true", "gpu_rtx_6000"), hosts_of("false", "gpu_rtx_6000")) == (1, 0)  # "false" at 0: resolvable
    assert (hosts_of("true", ""), hosts_of("false", "")) == (0, 1)
    assert r.get_sample_value("hammersmith_blazar_leases", {"site": "lab", "status": "ACTIVE"}) == 2
    assert r.get_sample_value("hammersmith_blazar_leases", {"site": "lab", "status": "ERROR"}) == 1


def test_blazar_hosts_without_any_keep_both_series_at_zero(telemetry: Telemetry) -> None:
    telemetry.record(snapshot(blazar_hosts=[], leases=[]), [], None)
    r = registry_for("blazar", telemetry)
    for reservable in ("true", "false"):
        labels = {"site": "lab", "reservable": reservable, "node_type": ""}
        assert r.get_sample_value("hammersmith_blazar_hosts", labels) == 0


def test_maintenance_leases_by_the_site_pattern(telemetry: Telemetry) -> None:
    leases = [
        blazar_lease("l1", "maint-2026-12-rack3", "ACTIVE", "DONE"),
        blazar_lease("l2", "Maintenance BIOS update", "PENDING"),
        blazar_lease("l3", "my-experiment", "ACTIVE", "DONE"),
        blazar_lease("l4", "ops-firmware", "PENDING"),
    ]
    telemetry.record(snapshot(blazar_hosts=[], leases=leases), [], None)

    def maintenance(status: str) -> float | None:
        labels = {"site": "lab", "status": status}
        return registry_for("blazar", telemetry).get_sample_value("hammersmith_blazar_maintenance_leases", labels)

    assert (maintenance("ACTIVE"), maintenance("PENDING")) == (1, 1)  # default (?i)maint: case-insensitive
    telemetry.record(snapshot(blazar_hosts=[], leases=leases), [], None, maintenance_lease_pattern="^(maint|ops)-")
    assert (maintenance("ACTIVE"), maintenance("PENDING")) == (1, 1)  # maint-..., ops-...; not "Maintenance ..."
    telemetry.record(snapshot(blazar_hosts=[], leases=leases), [], None, maintenance_lease_pattern="^reserved-")
    assert (maintenance("ACTIVE"), maintenance("PENDING")) == (0, 0)  # every status of the leases, at 0


def test_lease_start_failures_count_arrivals_per_project_with_names(telemetry: Telemetry) -> None:
    projects = [{"id": "p-user", "name": "CHI-231", "domain_id": "default", "enabled": True}]

    def failures(project: str, name: str) -> float | None:
        labels = {"site": "lab", "project": project, "project_name": name}
        return registry_for("blazar", telemetry).get_sample_value(
            "hammersmith_blazar_lease_start_failures_total", labels
        )

    old = blazar_lease("l0", "exp-0", "ERROR", "ERROR")
    telemetry.record(snapshot(blazar_hosts=[], leases=[old], projects=projects), [], None)  # baseline
    assert failures("p-user", "CHI-231") == 0
    pending = blazar_lease("l1", "exp-1", "PENDING")
    telemetry.record(snapshot(blazar_hosts=[], leases=[old, pending], projects=projects), [], None)
    assert failures("p-user", "CHI-231") == 0
    # l1's start fails; a lease whose end failed is not a start failure
    failed = blazar_lease("l1", "exp-1", "ERROR", "ERROR")
    ended = blazar_lease("l2", "maint-1", "ERROR", "DONE")
    ended["events"][2]["status"] = "ERROR"
    for _ in range(2):  # still failed in the next cycle: counted once
        telemetry.record(snapshot(blazar_hosts=[], leases=[old, failed, ended], projects=projects), [], None)
    assert failures("p-user", "CHI-231") == 1
    assert failures("p-ops", "") is None
    # Blazar unreadable for a cycle, Keystone too: nothing forgotten, nothing counted twice, the name kept
    telemetry.record(snapshot(incomplete=("blazar", "keystone")), [], None)
    updated = blazar_lease("l1", "exp-1", "UPDATING", "ERROR")  # an operator updates it: the event stays ERROR
    telemetry.record(snapshot(blazar_hosts=[], leases=[old, updated]), [], None)
    assert failures("p-user", "CHI-231") == 1


def test_launch_failures_carry_the_project_name(telemetry: Telemetry) -> None:
    projects = [{"id": "p1", "name": "CHI-231", "domain_id": "default"}]
    telemetry.record(snapshot(servers=[], projects=projects), [], None)
    failed = {"id": "s1", "status": "ERROR", "tenant_id": "p1"}
    unnamed = {"id": "s2", "status": "ERROR", "tenant_id": "p-gone"}
    telemetry.record(snapshot(servers=[failed, unnamed], projects=projects), [], None)
    r = registry_for("launches", telemetry)
    labels = {"site": "lab", "service": "nova", "project": "p1", "project_name": "CHI-231"}
    assert r.get_sample_value("hammersmith_launch_failures_total", labels) == 1
    labels = {"site": "lab", "service": "nova", "project": "p-gone", "project_name": ""}
    assert r.get_sample_value("hammersmith_launch_failures_total", labels) == 1


def test_freshness_ages_and_marks_a_failed_login(telemetry: Telemetry) -> None:
    snap = snapshot(nodes=[node("n1")], age_seconds=30)
    snap.requests["keystone"] = 1
    telemetry.record(snap, [], None)
    r = registry_for("freshness", telemetry)
    assert r.get_sample_value("hammersmith_service_up", {"site": "lab", "service": "keystone"}) == 1
    assert r.get_sample_value("hammersmith_service_up", {"site": "lab", "service": "ironic"}) == 1
    assert r.get_sample_value("hammersmith_snapshot_complete", {"site": "lab"}) == 1
    age = r.get_sample_value("hammersmith_snapshot_age_seconds", {"site": "lab"})
    assert age is not None and 30 <= age < 40
    assert r.get_sample_value("hammersmith_snapshot_timestamp_seconds", {"site": "lab"}) == snap.started_at.timestamp()
    assert r.get_sample_value("hammersmith_snapshot_requests", {"site": "lab", "service": "ironic"}) == 3

    telemetry.record_failure("lab", "site 'lab': login failed: HTTP 401", login_failed=True)
    r = registry_for("freshness", telemetry)
    assert r.get_sample_value("hammersmith_service_up", {"site": "lab", "service": "keystone"}) == 0
    assert r.get_sample_value("hammersmith_service_up", {"site": "lab", "service": "ironic"}) == 0
    assert r.get_sample_value("hammersmith_cycles_total", {"site": "lab", "result": "failed"}) == 1
    assert r.get_sample_value("hammersmith_cycles_total", {"site": "lab", "result": "ok"}) == 1
    later = r.get_sample_value("hammersmith_snapshot_age_seconds", {"site": "lab"})
    assert later is not None and later >= age  # the old snapshot is still served, older


def test_keystone_is_one_series_down_when_its_projects_cannot_be_listed(telemetry: Telemetry) -> None:
    listed = snapshot(nodes=[node("n1")], projects=[{"id": "p1", "name": "CHI-231"}])
    listed.requests["keystone"] = 2  # the login, the projects
    telemetry.record(listed, [], None)
    r = registry_for("freshness", telemetry)
    samples = [s for m in r.collect() for s in m.samples if s.name == "hammersmith_service_up"]
    assert [s.value for s in samples if s.labels["service"] == "keystone"] == [1]
    failed = snapshot(incomplete=("keystone",), nodes=[node("n1")])
    failed.requests["keystone"] = 2
    telemetry.record(failed, [], None)
    r = registry_for("freshness", telemetry)
    assert r.get_sample_value("hammersmith_service_up", {"site": "lab", "service": "keystone"}) == 0
    assert r.get_sample_value("hammersmith_snapshot_complete", {"site": "lab"}) == 0


def test_incomplete_service_is_down_and_snapshot_incomplete(telemetry: Telemetry) -> None:
    telemetry.record(snapshot(incomplete=("neutron",), nodes=[node("n1")]), [], None)
    r = registry_for("freshness", telemetry)
    assert r.get_sample_value("hammersmith_service_up", {"site": "lab", "service": "neutron"}) == 0
    assert r.get_sample_value("hammersmith_service_up", {"site": "lab", "service": "ironic"}) == 1
    assert r.get_sample_value("hammersmith_service_up", {"site": "lab", "service": "nova"}) is None  # absent
    assert r.get_sample_value("hammersmith_snapshot_complete", {"site": "lab"}) == 0
    assert r.get_sample_value("hammersmith_cycles_total", {"site": "lab", "result": "incomplete"}) == 1


def test_api_requests_errors_and_latency(telemetry: Telemetry) -> None:
    observe = telemetry.observer("lab")
    observe("ironic", "200", 0.02)
    observe("ironic", "503", 0.3)
    observe("keystone", "connection", 0.001)
    r = registry_for("api", telemetry)
    assert (
        r.get_sample_value("hammersmith_api_requests_total", {"site": "lab", "service": "ironic", "code": "200"}) == 1
    )
    assert r.get_sample_value("hammersmith_api_request_errors_total", {"site": "lab", "service": "ironic"}) == 1
    assert r.get_sample_value("hammersmith_api_request_errors_total", {"site": "lab", "service": "keystone"}) == 1
    bucket = {"site": "lab", "service": "ironic", "le": "0.025"}
    assert r.get_sample_value("hammersmith_api_request_duration_seconds_bucket", bucket) == 1
    assert (
        r.get_sample_value("hammersmith_api_request_duration_seconds_count", {"site": "lab", "service": "ironic"}) == 2
    )


def test_hammers_findings_ledger_breaker_and_escalations(telemetry: Telemetry) -> None:
    from hammersmith.detect.checks import Finding

    findings = [Finding("deploy-failed", "uuid-n1", "n1", "deploy failed"), Finding("stuck", "uuid-n2", "n2", "stuck")]
    ledger = LedgerView(
        actions={("error-resetter", "succeeded"): 4, ("error-resetter", "escalated"): 1},
        breaker_open=True,
        last_sweep_ok=datetime(2026, 11, 25, 12, tzinfo=UTC),
    )
    escalated = node("n3", "error", maintenance=True, maintenance_reason="hammersmith: error-resetter gave up")
    telemetry.record(snapshot(nodes=[node("n1"), escalated]), findings, ledger)
    r = registry_for("hammers", telemetry)
    assert r.get_sample_value("hammersmith_findings", {"site": "lab", "check": "deploy-failed"}) == 1
    assert r.get_sample_value("hammersmith_findings", {"site": "lab", "check": "clean-failed"}) == 0
    actions = {"site": "lab", "hammer": "error-resetter", "outcome": "succeeded"}
    assert r.get_sample_value("hammersmith_hammer_actions_total", actions) == 4
    exhausted = "hammersmith_hammer_budget_exhaustions_total"
    assert r.get_sample_value(exhausted, {"site": "lab", "hammer": "error-resetter"}) == 1
    assert r.get_sample_value(exhausted, {"site": "lab", "hammer": "clean-failed"}) == 0
    assert r.get_sample_value("hammersmith_nodes_escalated", {"site": "lab"}) == 1
    assert r.get_sample_value("hammersmith_breaker_open", {"site": "lab"}) == 1
    last = r.get_sample_value("hammersmith_sweep_last_success_timestamp_seconds", {"site": "lab"})
    assert last == datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()
    assert r.get_sample_value("hammersmith_notification_failures_total", {"site": "lab"}) == 0


def test_every_site_gets_its_label(telemetry: Telemetry) -> None:
    two = Telemetry(["east", "west"])
    two.record(snapshot("east", nodes=[node("a")]), [], None)
    two.record(snapshot("west", nodes=[node("b"), node("c")]), [], None)
    r = registry_for("ironic", two)
    count = {"provision_state": "available", "maintenance": "false", "resource_class": "baremetal"}
    assert r.get_sample_value("hammersmith_ironic_nodes", {"site": "east", **count}) == 1
    assert r.get_sample_value("hammersmith_ironic_nodes", {"site": "west", **count}) == 2


def test_schedules_are_exported_so_staleness_rules_follow_the_config() -> None:
    from hammersmith import config
    from hammersmith.quantify.telemetry import schedule

    site = config.parse(
        "sites:\n  lab:\n    cloud: x\n    sweep_interval_seconds: 1200\n"
        "    smoke:\n      expensive_interval_seconds: 0\n"
    ).sites["lab"]
    agent = Telemetry(["lab"], {"lab": schedule(site, agent=True)})
    r = registry_for("freshness", agent)
    interval = "hammersmith_schedule_interval_seconds"
    assert r.get_sample_value(interval, {"site": "lab", "schedule": "cycle", "set": ""}) == 1200
    assert r.get_sample_value(interval, {"site": "lab", "schedule": "smoke", "set": "cheap"}) == 3600
    assert r.get_sample_value(interval, {"site": "lab", "schedule": "smoke", "set": "expensive"}) == 0
    exporter_only = registry_for("freshness", Telemetry(["lab"], {"lab": schedule(site, agent=False)}))
    assert exporter_only.get_sample_value(interval, {"site": "lab", "schedule": "probes", "set": ""}) is None
