"""Every query of the Grafana dashboard, run by a real Prometheus scraping a real agent, returns data (issue 15).

A dashboard whose panels say "No data" is worse than none: it teaches operators to ignore it. So each panel's
PromQL is taken from the exported JSON, Grafana's variables substituted as Grafana would, and sent to
Prometheus' query API; each must answer at least one series with a number. The data comes from real events:
the light testbed's demo faults (findings, observed actions), a node the agent itself fixes (the MTTR), an
Alertmanager delivery (an incident), an Ironic that answers 500 for a while (API errors). The Blazar row needs
the full tier: a read-only `hammersmith exporter` and one lease far in the future, deleted afterwards.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from hammersmith.quantify import grafana
from hammersmith.testbed import blazar, fleet, lifecycle
from hammersmith.testbed.faults import Injector
from hammersmith.testbed.ironic import CLOUD_NAME, Ironic, free_port
from hammersmith.testbed.prometheus import Prometheus, missing_binaries
from hammersmith.web import webhook
from tests.conftest import Testbed, ironic_answers_500
from tests.testbed.test_full_tier import INSTALLED

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_binaries()), reason="scripts/setup --test installs prometheus"),
]
TOKEN = "grafana-webhook-token-0123456789"
INTERVAL = 5  # the agent's sweep_interval_seconds (the least the config allows)
#: Grafana's variables as a 5-minute view of Prometheus scraped every second would set them
#: ($__rate_interval = max($__interval + scrape interval, 4 * scrape interval), widened so a window holds sweeps)
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "15s", "$__range": "5m"}


def queries(blazar_row: bool) -> list[tuple[str, str]]:
    """("row / panel / refId", expr) of every target of the Blazar row's panels, or of every other panel."""
    found = []
    row = ""
    for panel in grafana.build()["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
        elif (row == grafana.BLAZAR_ROW) == blazar_row:
            found += [(f"{row} / {panel['title']} / {t['refId']}", t["expr"]) for t in panel["targets"]]
    return found


def substitute(expr: str, site: str) -> str:
    """The query Grafana sends for one selected site."""
    for name, value in {**GRAFANA_VARIABLES, "$site": site}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable this test does not set: {expr}"
    return expr


def numbers(prometheus: Prometheus, expr: str) -> list[float]:
    """The finite values an instant query answers (NaN, e.g. a quantile over no requests, is not data)."""
    values = [float(sample["value"][1]) for sample in prometheus.query(expr)]
    return [v for v in values if math.isfinite(v)]


def assert_every_query_returns_data(prometheus: Prometheus, wanted: list[tuple[str, str]], site: str) -> None:
    """Each query answers a finite value within a few scrapes; every one that does not is named at once."""
    assert wanted
    pending = {name: substitute(expr, site) for name, expr in wanted}
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        pending = {name: expr for name, expr in pending.items() if not numbers(prometheus, expr)}
        time.sleep(1)
    assert not pending, "panel queries without data:\n" + "\n".join(f"{n}: {e}" for n, e in pending.items())


def site_values(prometheus: Prometheus) -> list[str]:
    """The `site` variable's options: Grafana runs label_values(selector, site) as Prometheus' label values API."""
    match = re.fullmatch(r"label_values\((.+), site\)", grafana.SITE_VALUES)
    assert match, grafana.SITE_VALUES
    answer = httpx.get(f"{prometheus.url}/api/v1/label/site/values", params={"match[]": match[1]}, timeout=10)
    return list(answer.raise_for_status().json()["data"])


def wait_for(prometheus: Prometheus, expr: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until the query answers, failing at once with the log if the agent (or exporter) has exited."""
    deadline = time.monotonic() + timeout
    while not prometheus.query(expr):
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no answer to {expr} after {timeout} s; log:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def start(config: Path, log: Path, cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "hammersmith", "--config", str(config), *args],
            cwd=cwd,
            env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(cwd / "clouds.yaml")},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def firing(alertname: str) -> dict:
    """Alertmanager's webhook body (version 4) with one firing alert of the site, mapped to no hammer."""
    alert = {
        "status": "firing",
        "labels": {"alertname": alertname, "severity": "warning", "site": "lab"},
        "annotations": {"summary": "raised by the Grafana dashboard test"},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "0123456789abcdef",
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "status": "firing",
        "receiver": "hammersmith",
        "alerts": [alert],
    }


@pytest.fixture
def fixed_node(testbed: Testbed, demo_faults: dict[str, list[str]]) -> Iterator[str]:
    """One more node of the session's testbed in `deploy failed`, for the agent to fix; forgotten as a fault again
    once it is back in `available`, so the testbed is as the other modules expect it."""
    (node,) = lifecycle.inject(testbed.workdir, "deploy-failed")
    yield node
    if testbed.node_raw(node)["provision_state"] != "deploy failed":  # acted on: it comes back by cleaning
        fleet.wait_for(testbed.conn, [node], {"available"}, 120, fail_fast=False)
        ironic = Ironic(lifecycle.testbed_dir(testbed.workdir))
        state = ironic.load_state()
        assert state is not None
        Injector(testbed.conn, ironic, state).release(node)  # else it stays a recorded fault, as it is


def test_every_panel_but_blazar_returns_data_from_a_real_agent(
    testbed: Testbed, demo_faults: dict[str, list[str]], fixed_node: str, tmp_path: Path
) -> None:
    # the agent acts only on the node given to it: error-resetter applies, the demo's nodes are exempt (they stay
    # broken for the other modules), every other hammer only observes
    policy = {"grace_minutes": 0, "exempt_nodes": sorted(demo_faults), "hammers": {"error-resetter": "apply"}}
    site = {"cloud": CLOUD_NAME, "sweep_interval_seconds": INTERVAL, "policy": policy}
    site |= {
        "probes": {"interval_seconds": 3600},
        "smoke": {"cheap_interval_seconds": 0, "expensive_interval_seconds": 0},
    }
    port = free_port()
    http = {"listen": f"127.0.0.1:{port}", "webhook_token": TOKEN}
    config = tmp_path / "hammersmith.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path), "http": http, "sites": {"lab": site}}))
    log = tmp_path / "agent.log"
    agent = start(config, log, testbed.workdir, "run", "--site", "lab")
    prometheus = Prometheus(tmp_path / "prometheus")
    try:
        prometheus.start([f"127.0.0.1:{port}"])
        wait_for(prometheus, 'hammersmith_schedule_interval_seconds{site="lab",schedule="cycle"}', agent, log)
        assert site_values(prometheus) == ["lab"]
        # the node the agent fixes: its verified fix is the MTTR
        wait_for(prometheus, 'hammersmith_hammer_time_to_fixed_seconds_count{site="lab"} > 0', agent, log, 120)
        # an incident: Alertmanager's delivery to the agent's webhook
        answer = httpx.post(
            f"http://127.0.0.1:{port}{webhook.PATH}",
            json=firing("OpenStackApiErrors"),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        wait_for(prometheus, 'hammersmith_incidents_open{site="lab",alertname="OpenStackApiErrors"} == 1', agent, log)
        # API errors: Ironic answers its node listing with a 500 for a few sweeps
        with ironic_answers_500(testbed):
            wait_for(prometheus, 'hammersmith_api_request_errors_total{site="lab",service="ironic"} > 0', agent, log)
        wait_for(prometheus, 'hammersmith_snapshot_complete{site="lab"} == 1', agent, log)

        assert_every_query_returns_data(prometheus, queries(blazar_row=False), "lab")
        assert agent.poll() is None, log.read_text()[-3000:]
    finally:
        stop(agent)
        prometheus.stop()


@pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
def test_the_blazar_panels_return_data_from_the_full_tier(full_testbed: Testbed, tmp_path: Path) -> None:
    """Read-only: `hammersmith exporter` acts on nothing; the one lease starts in 300 days and is deleted."""
    admin = fleet.connect(full_testbed.state)
    api = blazar.client(admin.project)
    site = {"cloud": CLOUD_NAME, "sweep_interval_seconds": 5}
    port = free_port()
    config = tmp_path / "hammersmith.yaml"
    config.write_text(
        yaml.safe_dump({"state_dir": str(tmp_path), "http": {"listen": f"127.0.0.1:{port}"}, "sites": {"full": site}})
    )
    # a lease of any host of a node type, in 300 days: Blazar holds it PENDING, nothing happens to a node
    node_type = api.get("/os-hosts").json()["hosts"][0]["node_type"]
    body = blazar.lease_body("maint-grafana-panels", node_type, start=datetime.now(UTC) + timedelta(days=300))
    lease = api.post("/leases", json=body).json()["lease"]
    log = tmp_path / "exporter.log"
    exporter = start(config, log, full_testbed.workdir, "exporter")
    prometheus = Prometheus(tmp_path / "prometheus")
    try:
        prometheus.start([f"127.0.0.1:{port}"])
        wait_for(prometheus, 'hammersmith_blazar_leases{site="full",status="PENDING"}', exporter, log, 90)
        assert_every_query_returns_data(prometheus, queries(blazar_row=True), "full")
        assert exporter.poll() is None, log.read_text()[-3000:]
    finally:
        stop(exporter)
        prometheus.stop()
        api.delete(f"/leases/{lease['id']}")
        admin.close()
