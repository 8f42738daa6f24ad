"""The alerts on Nova and Blazar, in a real Prometheus, on faults injected into the real full tier (issue 12).

A `hammersmith run` agent logs in with its least-privilege account and exports the full tier; Prometheus
scrapes it with the shipped rules, changed only in time: `for: 0s`, and LaunchFailures' one-hour window
made 20 s (a test cannot wait an hour for it to resolve). Each alert fires on its fault, with the
labels and text an operator reads, and resolves once the fault is fixed the way its runbook says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hammersmith.cli.rules import RULES_DIR
from hammersmith.testbed import blazar
from hammersmith.testbed.faults import USER_PROJECT, Injector
from hammersmith.testbed.ironic import CLOUD_NAME, free_port
from hammersmith.testbed.prometheus import Prometheus, missing_binaries
from tests.conftest import Testbed
from tests.testbed.test_full_tier import INSTALLED

pytestmark = [
    pytest.mark.skipif(bool(missing_binaries()), reason="scripts/setup --test installs prometheus"),
    pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server"),
]
SITE = "full"
WINDOW = "20s"


@pytest.fixture
def prometheus(full_testbed: Testbed, tmp_path: Path) -> Iterator[Prometheus]:
    """An agent on the full tier (a cycle every 5 s, the least), scraped every second with the shipped rules (`for: 0s`,
    LaunchFailures over WINDOW)."""
    site = {"cloud": CLOUD_NAME, "sweep_interval_seconds": 5, "probes": {"interval_seconds": 3600}}
    site["smoke"] = {"cheap_interval_seconds": 0, "expensive_interval_seconds": 0}
    config = tmp_path / "hammersmith.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path), "sites": {SITE: site}}))
    port = free_port()
    rules = (RULES_DIR / "hammersmith.rules.yml").read_text()
    rules = re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", rules)
    rules = rules.replace("[1h]", f"[{WINDOW}]").replace("offset 1h", f"offset {WINDOW}")
    (tmp_path / "hammersmith.rules.yml").write_text(rules)
    server = Prometheus(tmp_path / "prometheus")
    with (tmp_path / "agent.log").open("wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "hammersmith", "--config", str(config), "run", "--listen", f"127.0.0.1:{port}"],
            cwd=full_testbed.workdir,
            env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(full_testbed.workdir / "clouds.yaml")},
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    try:
        server.start([f"127.0.0.1:{port}"], rule_files=[tmp_path / "hammersmith.rules.yml"])
        # a complete snapshot of every service, as the least-privilege account reads it
        server.wait_for(f'hammersmith_blazar_hosts{{site="{SITE}"}}')
        complete = server.query(f'hammersmith_snapshot_complete{{site="{SITE}"}}')
        assert [c["value"][1] for c in complete] == ["1"], (tmp_path / "agent.log").read_text()[-3000:]
        yield server
    finally:
        agent.terminate()
        agent.wait(timeout=60)
        server.stop()


def alerts(prometheus: Prometheus, name: str) -> list[dict[str, Any]]:
    """The site's firing alerts of that name (Prometheus' alerts API), with labels and annotations."""
    body = httpx.get(f"{prometheus.url}/api/v1/alerts", timeout=10).json()
    return [
        alert
        for alert in body["data"]["alerts"]
        if alert["labels"]["alertname"] == name and alert["labels"].get("site") == SITE and alert["state"] == "firing"
    ]


def wait(what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.5)
    return value


def series(prometheus: Prometheus, family: str, by: str) -> dict[str, float]:
    """The site's samples of a family, summed by one label."""
    found = prometheus.query(f'sum by ({by}) ({family}{{site="{SITE}"}})')
    return {sample["metric"].get(by, ""): float(sample["value"][1]) for sample in found}


def test_the_families_read_what_the_services_hold(prometheus: Prometheus, inj: Injector) -> None:
    """Nova's servers, Placement's providers, Neutron's floating IPs and Blazar's hosts and leases, against what
    the services' admin lists at the same time; a maintenance lease appears as one."""
    admin = inj.cloud
    api = blazar.client(admin)
    (node,) = inj.targets("maintenance-no-reason", 1)  # a node taken for a look, nothing injected
    found = inj.bm.get_node(node)
    body = blazar.lease_body(
        f"maint-{node}: DIMM B2, OPS-1432", found.resource_class, datetime.now(UTC) + timedelta(hours=2), 1, found.id
    )
    lease = api.post("/leases", json=body).json()["lease"]
    try:

        def agree() -> bool:
            hosts = api.get("/os-hosts").json()["hosts"]
            types: dict[str, float] = {}
            for host in hosts:
                types[host["node_type"]] = types.get(host["node_type"], 0) + 1
            statuses: dict[str, float] = {}
            for server in admin.compute.servers(all_projects=True):
                statuses[server.status] = statuses.get(server.status, 0) + 1
            leases: dict[str, float] = {}
            for each in api.get("/leases").json()["leases"]:
                leases[each["status"]] = leases.get(each["status"], 0) + 1
            providers = len(list(admin.placement.resource_providers()))
            idle = sum(1 for ip in inj.conn.network.ips() if not ip.port_id)
            return (
                series(prometheus, "hammersmith_blazar_hosts", "node_type") == types
                and {k: v for k, v in series(prometheus, "hammersmith_nova_servers", "status").items() if v} == statuses
                and {k: v for k, v in series(prometheus, "hammersmith_blazar_leases", "status").items() if v} == leases
                and series(prometheus, "hammersmith_placement_resource_providers", "site") == {SITE: providers}
                and series(prometheus, "hammersmith_neutron_floating_ips", "state").get("idle", 0) == idle
                and series(prometheus, "hammersmith_blazar_maintenance_leases", "status").get("PENDING", 0) >= 1
            )

        wait("the families to match the services", agree)
    finally:
        api.delete(f"/leases/{lease['id']}")


def test_launch_failures_fire_per_project_with_its_name_and_resolve(prometheus: Prometheus, inj: Injector) -> None:
    project = inj.user_project_id()
    names = inj.targets("launch-failed", 4)  # the rule's threshold: more than 3 in its window
    inj.inject("launch-failed", names)
    (alert,) = wait("LaunchFailures", lambda: alerts(prometheus, "LaunchFailures"))
    assert alert["labels"]["project"] == project and float(alert["value"]) >= 4
    assert f"project {project} ({USER_PROJECT})" in alert["annotations"]["summary"]
    assert prometheus.query(
        f'hammersmith_launch_failures_total{{site="{SITE}",project="{project}",project_name="{USER_PROJECT}"}}'
    )
    for server in inj.cloud.compute.servers(all_projects=True, project_id=project):
        if server.name in names:  # the user gave up: no new failure in the window, the alert ends
            inj.cloud.compute.delete_server(server)
    wait("LaunchFailures to resolve", lambda: not alerts(prometheus, "LaunchFailures"))


def test_a_lease_whose_start_failed_fires_until_the_lease_is_deleted(prometheus: Prometheus, inj: Injector) -> None:
    (node,) = inj.targets("lease-start-failed", 1)
    inj.inject("lease-start-failed", [node])
    wait("BlazarLeaseError", lambda: alerts(prometheus, "BlazarLeaseError"))
    assert prometheus.query(f'hammersmith_blazar_lease_start_failures_total{{site="{SITE}"}} > 0')
    api = blazar.client(inj.cloud)
    for lease in api.get("/leases").json()["leases"]:
        if lease["status"] == "ERROR":  # the runbook's way out: the user leases again, the failed one goes
            api.delete(f"/leases/{lease['id']}")
    wait("BlazarLeaseError to resolve", lambda: not alerts(prometheus, "BlazarLeaseError"))
    inj.release(node)  # healthy again: the next lease of it starts


def test_hosts_blazar_finds_down_fire_per_node_type_and_resolve(prometheus: Prometheus, inj: Injector) -> None:
    (node,) = inj.targets("host-not-reservable", 1)
    found = inj.bm.get_node(node)
    inj.inject("host-not-reservable", [node])
    (alert,) = wait("BlazarHostsNotReservable", lambda: alerts(prometheus, "BlazarHostsNotReservable"))
    assert alert["labels"]["node_type"] == found.resource_class and float(alert["value"]) == 1
    service = inj.compute_service(found.id)
    inj.cloud.compute.enable_service(service, service.host, service.binary)
    wait("BlazarHostsNotReservable to resolve", lambda: not alerts(prometheus, "BlazarHostsNotReservable"))
    inj.release(node)
