"""Smoke scenarios against the real Keystone tier: the cheap set, a forced failure, the expensive set's real
deploy through Ironic, its node selection, cleanup after a timeout, the report files and the metrics."""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hammersmith import config
from hammersmith.config import Site
from hammersmith.detect import smoke
from hammersmith.detect.smoke import SmokeRun
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.testbed import fleet, lifecycle
from tests.conftest import Testbed, hammersmith


def site_of(bed: Testbed, monkeypatch: pytest.MonkeyPatch, **smoke_settings: Any) -> tuple[str, Site]:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(bed.workdir / "clouds.yaml"))
    name, site = config.load(bed.workdir / "hammersmith.yaml").site(None)
    return name, site.model_copy(update={"smoke": site.smoke.model_copy(update=smoke_settings)})


def leftovers(bed: Testbed) -> list[str]:
    """Every hammersmith-smoke-* network and port in Neutron, as the testbed's admin sees them."""
    net = bed.conn.network
    return [f"network {n.name}" for n in net.networks() if n.name.startswith(smoke.PREFIX)] + [
        f"port {p.name}" for p in net.ports() if p.name.startswith(smoke.PREFIX)
    ]


def check_ctrf(path: Path, run: SmokeRun) -> dict[str, Any]:
    """The CTRF file has the structure of https://ctrf.io's schema, and the run's results."""
    report = json.loads(path.read_text())
    results = report["results"]
    assert results["tool"]["name"] == "hammersmith"
    summary = results["summary"]
    assert set(summary) >= {"tests", "passed", "failed", "skipped", "pending", "other", "start", "stop"}
    assert all(isinstance(summary[k], int) for k in ("tests", "passed", "failed", "skipped", "pending", "other"))
    assert summary["start"] <= summary["stop"] and summary["start"] > 1_600_000_000_000  # ms since the epoch
    assert summary["tests"] == len(results["tests"]) == len(run.results)
    for status in ("passed", "failed", "skipped"):
        assert summary[status] == sum(1 for r in run.results if r.status == status)
    for test, result in zip(results["tests"], run.results, strict=True):
        assert test["name"] == result.scenario and test["status"] == result.status
        assert test["status"] in ("passed", "failed", "skipped") and isinstance(test["duration"], int)
        assert test.get("message") == result.message
    return report


def check_junit(path: Path, run: SmokeRun) -> ET.Element:
    root = ET.parse(path).getroot()
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests", -1)) == len(cases) == len(run.results)
    assert int(suite.get("failures", -1)) == sum(1 for c in cases if c.find("failure") is not None)
    assert int(suite.get("failures", -1)) == sum(1 for r in run.results if r.status == "failed")
    assert int(suite.get("skipped", -1)) == sum(1 for c in cases if c.find("skipped") is not None)
    assert [c.get("name") for c in cases] == [r.scenario for r in run.results]
    return suite


def metrics(name: str, run: SmokeRun) -> dict[str, dict[str, float]]:
    """Family -> scenario -> value, as the exporter serves the run."""
    telemetry = Telemetry([name])
    telemetry.record_smoke(name, run)
    served = text_string_to_metric_families(Exporter(telemetry).render().decode())
    return {
        f.name: {s.labels["scenario"]: s.value for s in f.samples if s.labels.get("set") == run.set}
        for f in served
        if f.name.startswith("hammersmith_smoke_")
    }


def test_cheap_set_passes_and_leaves_nothing_behind(
    keystone_testbed: Testbed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name, site = site_of(keystone_testbed, monkeypatch)
    run = smoke.run_and_report(name, site, "cheap", tmp_path)
    assert [(r.scenario, r.status) for r in run.results] == [
        ("token-issue", "passed"),
        ("list-nodes", "passed"),
        ("network-port", "passed"),
    ], run.results
    assert leftovers(keystone_testbed) == []
    assert all(0 < r.seconds < 30 for r in run.results)

    check_ctrf(Path(run.reports["ctrf"]), run)
    check_junit(Path(run.reports["junit"]), run)
    assert Path(run.reports["latest_ctrf"]).read_text() == Path(run.reports["ctrf"]).read_text()
    assert "-cheap-" in Path(run.reports["ctrf"]).name and "-cheap-" in Path(run.reports["junit"]).name

    served = metrics(name, run)
    assert served["hammersmith_smoke_success"] == {"token-issue": 1.0, "list-nodes": 1.0, "network-port": 1.0}
    assert served["hammersmith_smoke_duration_seconds"]["network-port"] == pytest.approx(run.results[2].seconds)
    assert set(served["hammersmith_smoke_last_run_timestamp_seconds"]) == {"token-issue", "list-nodes", "network-port"}


@pytest.fixture
def port_creation_denied(keystone_testbed: Testbed) -> Iterator[None]:
    """Neutron's own policy refuses port creation (the real Neutron re-reads its policy file), restored after."""
    policy = lifecycle.testbed_dir(keystone_testbed.workdir) / "neutron" / "policy.yaml"
    original = policy.read_text()
    policy.write_text(original + '\n"create_port": "!"\n')
    try:
        yield
    finally:
        policy.write_text(original)


def test_a_failing_scenario_is_reported_failed_and_cleans_up(
    keystone_testbed: Testbed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, port_creation_denied: None
) -> None:
    name, site = site_of(keystone_testbed, monkeypatch)
    cli = hammersmith("smoke", "run", "--set", "cheap", "--json", cwd=keystone_testbed.workdir)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert [r["status"] for r in json.loads(cli.stdout)["results"]] == ["passed", "passed", "failed"]

    run = smoke.run_and_report(name, site, "cheap", tmp_path)
    failed = run.results[2]
    assert failed.scenario == "network-port" and failed.status == "failed"
    assert failed.message and "HTTP 403" in failed.message and "create_port is disallowed" in failed.message
    assert leftovers(keystone_testbed) == []

    check_ctrf(Path(run.reports["ctrf"]), run)
    suite = check_junit(Path(run.reports["junit"]), run)
    failure = suite.findall("testcase")[2].find("failure")
    assert failure is not None and "create_port is disallowed" in (failure.get("message") or "")
    assert metrics(name, run)["hammersmith_smoke_success"]["network-port"] == 0.0


@pytest.fixture
def project_networks(keystone_testbed: Testbed) -> Iterator[None]:
    """The testbed's Neutron with VLAN project networks (its ML2 has none), restarted, and restored after."""
    ml2 = lifecycle.testbed_dir(keystone_testbed.workdir) / "neutron" / "ml2_conf.ini"
    original = ml2.read_text()
    enabled = original.replace("type_drivers = flat\n", "type_drivers = flat,vlan\n").replace(
        "tenant_network_types =\n", "tenant_network_types = vlan\n"
    )
    assert enabled != original
    ml2.write_text(enabled + "\n[ml2_type_vlan]\nnetwork_vlan_ranges = physnet1:1000:1099\n")
    lifecycle.stop_service(keystone_testbed.workdir, "neutron")
    lifecycle.start_service(keystone_testbed.workdir, "neutron")
    try:
        yield
    finally:
        ml2.write_text(original)
        lifecycle.stop_service(keystone_testbed.workdir, "neutron")
        lifecycle.start_service(keystone_testbed.workdir, "neutron")


def test_network_port_with_project_networks_creates_both_and_always_deletes_both(
    keystone_testbed: Testbed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, project_networks: None
) -> None:
    name, site = site_of(keystone_testbed, monkeypatch)
    run = smoke.run(name, site, "cheap", only=["network-port"])
    (result,) = run.results
    assert result.status == "passed" and result.message is None  # its own network, no fallback
    assert leftovers(keystone_testbed) == []

    policy = lifecycle.testbed_dir(keystone_testbed.workdir) / "neutron" / "policy.yaml"
    original = policy.read_text()
    policy.write_text(original + '\n"create_port": "!"\n')
    try:
        run = smoke.run_and_report(name, site, "cheap", tmp_path, only=["network-port"])
    finally:
        policy.write_text(original)
    (result,) = run.results
    assert result.status == "failed" and result.message and "create_port is disallowed" in result.message
    assert leftovers(keystone_testbed) == []  # the network created before the port failed is gone
    check_ctrf(Path(run.reports["ctrf"]), run)
    check_junit(Path(run.reports["junit"]), run)


@pytest.fixture
def decoys(keystone_testbed: Testbed) -> Iterator[tuple[str, list[str]]]:
    """(resource class, its healthy available nodes by name); the first is put in maintenance, the second gets
    a user's instance, the third a lessee -- all restored afterwards."""
    bm = keystone_testbed.conn.baremetal
    healthy: dict[str, list[str]] = {}
    for n in bm.nodes(details=True):
        if n.provision_state == "available" and not n.is_maintenance and not n.instance_id and not n.lessee:
            healthy.setdefault(n.resource_class, []).append(n.name)
    rc, names = max(healthy.items(), key=lambda kv: len(kv[1]))
    names.sort()
    assert len(names) >= 4, healthy
    maintenance, instance, leased = names[:3]
    bm.set_node_maintenance(maintenance, reason="operator: smoke test decoy")
    bm.patch_node(instance, [{"op": "add", "path": "/instance_uuid", "value": str(uuid.uuid4())}])
    bm.patch_node(leased, [{"op": "add", "path": "/lessee", "value": "some-project"}])
    try:
        yield rc, names
    finally:
        bm.unset_node_maintenance(maintenance)
        bm.patch_node(instance, [{"op": "remove", "path": "/instance_uuid"}])
        bm.patch_node(leased, [{"op": "remove", "path": "/lessee"}])


def deploy_and_boot(results: list[Any]) -> tuple[Any, Any]:
    """The expensive set's two results on a tier without Nova and Blazar: deploy-node's, and reserve-and-boot's,
    skipped."""
    by_name = {r.scenario: r for r in results}
    assert set(by_name) == {"deploy-node", "reserve-and-boot"} and by_name["reserve-and-boot"].status == "skipped"
    return by_name["deploy-node"], by_name["reserve-and-boot"]


def test_expensive_set_deploys_a_free_node_and_never_a_used_one(
    keystone_testbed: Testbed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, decoys: tuple[str, list[str]]
) -> None:
    rc, names = decoys
    before = {n: keystone_testbed.node_raw(n) for n in names}
    name, site = site_of(keystone_testbed, monkeypatch, resource_class=rc)
    run = smoke.run_and_report(name, site, "expensive", tmp_path)
    result, _ = deploy_and_boot(run.results)
    assert result.status == "passed", result.message
    assert result.message == f"deployed {names[3]} to active and back to available"
    assert result.seconds < 60
    after = {n: keystone_testbed.node_raw(n) for n in names}
    deployed = after[names[3]]
    assert deployed["provision_state"] == "available" and not deployed["instance_uuid"]
    assert deployed["instance_info"] == {} and "hammersmith_smoke" not in deployed["extra"]
    assert deployed["provision_updated_at"] != before[names[3]]["provision_updated_at"]  # it really moved
    for decoy in names[:3]:  # never touched
        assert after[decoy]["provision_updated_at"] == before[decoy]["provision_updated_at"]
        assert after[decoy]["instance_info"] == before[decoy]["instance_info"]
    check_ctrf(Path(run.reports["ctrf"]), run)
    check_junit(Path(run.reports["junit"]), run)
    assert "-expensive-" in Path(run.reports["ctrf"]).name
    served = metrics(name, run)
    assert served["hammersmith_smoke_success"] == {"deploy-node": 1.0}


def test_expensive_set_fails_without_a_free_node_and_touches_nothing(
    keystone_testbed: Testbed, monkeypatch: pytest.MonkeyPatch, decoys: tuple[str, list[str]]
) -> None:
    rc, names = decoys
    name, site = site_of(keystone_testbed, monkeypatch, resource_class="no-such-class")
    result, _ = deploy_and_boot(smoke.run(name, site, "expensive").results)
    assert result.status == "failed"
    assert result.message == "RuntimeError: no available, unclaimed node of resource class no-such-class to deploy"


def test_a_timeout_mid_deploy_still_brings_the_node_back(
    keystone_testbed: Testbed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name, site = site_of(keystone_testbed, monkeypatch, timeout_seconds=0.05)
    run = smoke.run_and_report(name, site, "expensive", tmp_path)
    result, _ = deploy_and_boot(run.results)
    assert result.status == "failed" and result.message and "timed out while" in result.message
    (picked,) = re.findall(r"node ([0-9a-f-]{36})", result.message)
    node = keystone_testbed.node_raw(picked)
    assert node["provision_state"] == "available" and not node["instance_uuid"] and node["instance_info"] == {}
    nodes = fleet.list_nodes(keystone_testbed.conn)
    assert [n["name"] for n in nodes if (n.get("extra") or {}).get("hammersmith_smoke")] == []
    assert [
        n["name"] for n in nodes if (n["instance_info"] or {}).get("display_name", "").startswith(smoke.PREFIX)
    ] == []
    check_ctrf(Path(run.reports["ctrf"]), run)
    suite = check_junit(Path(run.reports["junit"]), run)
    assert suite.get("failures") == "1"


def test_the_agent_schedules_probes_and_smoke_in_threads_of_their_own(
    keystone_testbed: Testbed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Probes every 5 s and the cheap set every second reach the telemetry (hence /metrics) while a slow
    schedule is busy; an interval of 0 (the expensive set here) is never scheduled."""
    import threading
    import time

    from hammersmith.cli import detect as cli_detect

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(keystone_testbed.workdir / "clouds.yaml"))
    settings = config.load(keystone_testbed.workdir / "hammersmith.yaml")
    name, site = settings.site(None)
    site = site.model_copy(
        update={
            "probes": site.probes.model_copy(update={"interval_seconds": 5}),
            "smoke": site.smoke.model_copy(
                update={"cheap_interval_seconds": 1, "expensive_interval_seconds": 0, "reports_dir": tmp_path}
            ),
        }
    )
    settings = settings.model_copy(update={"sites": {name: site}})
    telemetry = Telemetry([name])
    stop = threading.Event()
    slow_started = threading.Event()
    slow = cli_detect.every(stop, 3600, "slow", lambda: (slow_started.set(), stop.wait(60)))  # a long deploy
    threads = cli_detect.schedule(settings, name, telemetry, stop)
    try:
        assert sorted(t.name for t in threads) == [f"probes-{name}", f"smoke-cheap-{name}"]
        assert slow_started.wait(5)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if telemetry.views()[name].probes and len(list(tmp_path.glob("smoke-*-cheap-*.ctrf.json"))) >= 2:
                break
            time.sleep(0.2)
    finally:
        cli_detect.finish([*threads, *([slow] if slow else [])], stop, 30)
    view = telemetry.views()[name]
    assert {p: r.status for p, r in view.probes.items()} == {
        "token": "passed",
        "catalog": "passed",
        "reads": "passed",
        "tls": "skipped",
    }
    assert {key: r.status for key, r in view.smoke.items()} == {
        ("cheap", "token-issue"): "passed",
        ("cheap", "list-nodes"): "passed",
        ("cheap", "network-port"): "passed",
    }
    assert len(list(tmp_path.glob("smoke-*-cheap-*.ctrf.json"))) >= 2  # the cheap set ran again, on its interval
    assert not any(t.is_alive() for t in threads)


def test_on_the_noauth_tier_what_does_not_apply_is_skipped(
    testbed: Testbed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name, site = site_of(testbed, monkeypatch)
    run = smoke.run_and_report(name, site, "cheap", tmp_path)
    assert [(r.scenario, r.status, r.message) for r in run.results] == [
        ("token-issue", "skipped", "auth_type none: the site issues no tokens"),
        ("list-nodes", "passed", None),
        ("network-port", "skipped", "the catalog has no network (Neutron) service"),
    ]
    report = check_ctrf(Path(run.reports["ctrf"]), run)
    assert report["results"]["summary"]["skipped"] == 2
    suite = check_junit(Path(run.reports["junit"]), run)
    assert suite.get("skipped") == "2" and suite.get("failures") == "0"
    assert metrics(name, run)["hammersmith_smoke_success"] == {"list-nodes": 1.0}  # skipped: no series
