"""The seed's loop, end to end, with real parts only: metric -> alert -> runbook -> hammer.

A real Ironic (this module's bed), `hammersmith exporter` scraped by a real Prometheus loaded with
the shipped rules (only `for:` shortened), a real Alertmanager routing to the agent's webhook,
and `hammersmith run` acting on what it is sent. A fault is injected; the alert fires; the
incident links its runbook; the hammer fixes the node; the alert resolves; the incident closes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hammersmith.store import open_store
from hammersmith.testbed.ironic import free_port
from hammersmith.testbed.prometheus import Alertmanager, Prometheus, missing_binaries
from tests.conftest import Testbed, hammersmith
from tests.react.conftest import break_nodes, wait_states, write_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),  # its own bounded waits (alert, incident, fix, resolve) add up to about 10 min
    pytest.mark.skipif(bool(missing_binaries()), reason="scripts/setup --test installs prometheus and alertmanager"),
]
TOKEN = "e2e-webhook-token-0123456789"
ALERT = "IronicNodeDeployFailed"


def wait(what: str, probe: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)
    return value


def start(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "hammersmith", "--config", str(config), *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def loop(bed: Testbed, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Agent, exporter, Prometheus and Alertmanager, wired as docs/alerts.md describes; stopped by PID."""
    agent_port, exporter_port = free_port(), free_port()
    base = f"http://127.0.0.1:{agent_port}"
    config = write_config(tmp_path, {"error-resetter": "apply"})
    settings = yaml.safe_load(config.read_text())
    settings["http"] = {"listen": f"127.0.0.1:{agent_port}", "webhook_token": TOKEN}
    site = settings["sites"]["lab"]
    site["alerts"] = {ALERT: "error-resetter"}
    site["sweep_interval_seconds"] = 3600  # the agent's own sweep must not fix the node first
    site["probes"] = {"interval_seconds": 3600}
    site["smoke"] = {"cheap_interval_seconds": 0, "expensive_interval_seconds": 0}
    config.write_text(yaml.safe_dump(settings))
    exporter_config = tmp_path / "exporter.yaml"
    site_for_exporter = {**site, "sweep_interval_seconds": 5}
    exporter_config.write_text(yaml.safe_dump({**settings, "sites": {"lab": site_for_exporter}}))

    rules = tmp_path / "rules"
    exported = hammersmith("--config", str(config), "rules", "export", "--out", str(rules), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    for path in rules.glob("*.rules.yml"):  # the test override: alerts fire as soon as their expression holds
        path.write_text(re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", path.read_text()))

    procs: list[subprocess.Popen[bytes]] = []
    servers: list[Prometheus | Alertmanager] = []
    try:
        procs.append(start(config, tmp_path / "agent.log", "run"))
        wait("the agent's first sweep", lambda: _healthy(base), timeout=60)
        procs.append(
            start(exporter_config, tmp_path / "exporter.log", "exporter", "--listen", f"127.0.0.1:{exporter_port}")
        )
        alertmanager = Alertmanager(tmp_path / "alertmanager")
        servers.append(alertmanager)
        alertmanager.start(
            yaml.safe_dump(
                {
                    "route": {
                        "receiver": "hammersmith",
                        "group_by": ["alertname", "site", "node"],
                        "group_wait": "1s",
                        "group_interval": "1s",
                        "repeat_interval": "1h",
                    },
                    "receivers": [
                        {
                            "name": "hammersmith",
                            "webhook_configs": [
                                {
                                    "url": f"{base}/api/v1/alertmanager",
                                    "send_resolved": True,
                                    "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}},
                                }
                            ],
                        }
                    ],
                }
            )
        )
        prometheus = Prometheus(tmp_path / "prometheus")
        servers.append(prometheus)
        prometheus.start(
            [f"127.0.0.1:{exporter_port}"], rule_files=sorted(rules.glob("*.rules.yml")), alertmanager=alertmanager.url
        )
        yield {"prometheus": prometheus, "base": base, "store": tmp_path / "hammersmith.sqlite", "dir": tmp_path}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        for server in servers:
            server.stop()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_fault_alert_webhook_hammer_resolve(bed: Testbed, loop: dict[str, Any]) -> None:
    prometheus: Prometheus = loop["prometheus"]
    (name,) = break_nodes(bed, "deploy-failed")

    firing = prometheus.wait_for(f'ALERTS{{alertname="{ALERT}",alertstate="firing",node="{name}"}}', timeout=90)
    assert firing[0]["metric"]["severity"] == "warning"

    store = open_store(f"sqlite:///{loop['store']}")
    try:
        incident = wait(
            "the incident",
            lambda: next((i for i in store.incidents() if i.alertname == ALERT and i.node == name), None),
        )
        assert incident.hammer == "error-resetter"
        assert incident.runbook_url == f"{loop['base']}/runbooks/{ALERT}"
        page = httpx.get(incident.runbook_url, timeout=10)
        assert page.status_code == 200 and ALERT in page.text

        wait_states(bed, [name], {"available"}, timeout=120)  # fixed by the hammer the alert asked for
        actions = wait(
            "the ledger row",
            lambda: [
                r
                for r in store.actions(node=name)
                if r.trigger == "alertmanager" and r.outcome in ("succeeded", "fixed")
            ],
        )
        assert len(actions) == 1 and actions[0].hammer == "error-resetter"

        # the exporter sees the node fixed, the alert stops, Alertmanager says so, the incident closes
        closed = wait(
            "the incident to close",
            lambda: next((i for i in store.incidents() if i.id == incident.id and i.status == "resolved"), None),
            timeout=120,
        )
        kinds = [e.kind for e in closed.events]
        assert kinds[0] == "received" and "action" in kinds and kinds[-1] == "resolved", kinds
        assert not prometheus.query(f'ALERTS{{alertname="{ALERT}",alertstate="firing",node="{name}"}}')
    finally:
        store.close()
