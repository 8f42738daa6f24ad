"""The real Prometheus and Alertmanager (Debian packages) the exporter and alert-rule tests build on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest, start_http_server

from hammersmith.errors import TestbedError
from hammersmith.testbed import process
from hammersmith.testbed.ironic import free_port
from hammersmith.testbed.prometheus import (
    Alertmanager,
    Prometheus,
    amtool_check_config,
    missing_binaries,
    promtool_check_config,
    promtool_check_metrics,
)

pytestmark = pytest.mark.skipif(
    bool(missing_binaries()),
    reason=f"not installed: {', '.join(missing_binaries())} (scripts/setup --test installs the Debian packages)",
)

AM_CONFIG = """\
route:
  receiver: blackhole
  group_wait: 0s
receivers:
  - name: blackhole
"""


@pytest.fixture
def exposition() -> Iterator[tuple[str, CollectorRegistry]]:
    """A prometheus_client HTTP server on 127.0.0.1 with one gauge; yields (host:port, registry)."""
    registry = CollectorRegistry()
    Gauge("demo_nodes_available", "Nodes a user could reserve now.", registry=registry).set(7)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}", registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def assert_stops(server: Prometheus | Alertmanager) -> None:
    pid = server.pid
    assert process.alive(pid)
    server.stop()
    assert server.pid is None
    assert not process.alive(pid)


def test_prometheus_scrapes_an_exposition_and_reports_a_down_target(
    tmp_path: Path, exposition: tuple[str, CollectorRegistry]
) -> None:
    target, _ = exposition
    nothing_there = f"127.0.0.1:{free_port()}"
    prometheus = Prometheus(tmp_path)
    with prometheus:
        prometheus.start([target, nothing_there])
        assert prometheus.url.startswith("http://127.0.0.1:")

        [series] = prometheus.wait_for("demo_nodes_available")
        assert series["metric"]["job"] == "hammersmith"
        assert series["value"][1] == "7"

        prometheus.wait_for("up == 0")
        health = {t["labels"]["instance"]: (t["health"], t["lastError"]) for t in prometheus.targets()}
        assert health[target] == ("up", "")
        assert health[nothing_there][0] == "down"
        assert "connection refused" in health[nothing_there][1]

        assert_stops(prometheus)


def test_the_generated_config_passes_promtool_and_a_broken_rule_does_not(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n  - name: demo\n    rules:\n      - alert: Demo\n        expr: vector(1)\n")
    prometheus = Prometheus(tmp_path)
    config = prometheus.write_config(
        ["127.0.0.1:1"], rule_files=[rules], alertmanager="http://127.0.0.1:2/am", bearer_token="s3cret"
    )
    assert promtool_check_config(config) == []

    rules.write_text(rules.read_text().replace("vector(1)", "sum("))
    problems = promtool_check_config(config)
    assert any("rules.yml" in p for p in problems), problems
    with pytest.raises(TestbedError, match="not started"):
        prometheus.query("up")


def test_promtool_check_metrics_accepts_prometheus_client_output_and_names_problems(
    exposition: tuple[str, CollectorRegistry],
) -> None:
    _, registry = exposition
    assert promtool_check_metrics(generate_latest(registry).decode()) == []

    bad = "# HELP demo_requests Requests served.\n# TYPE demo_requests counter\ndemo_requests 3\n"
    problems = promtool_check_metrics(bad)
    assert any("demo_requests" in p and "_total" in p for p in problems), problems

    assert promtool_check_metrics("not{{ an exposition\n")  # a parse error is a problem too


def test_alertmanager_config_check_start_alerts_and_stop(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(AM_CONFIG)
    assert amtool_check_config(good) == []
    broken = tmp_path / "broken.yml"
    broken.write_text(AM_CONFIG.replace("receiver: blackhole", "receiver: nowhere"))
    problems = amtool_check_config(broken)
    assert any('undefined receiver "nowhere"' in p for p in problems), problems

    alertmanager = Alertmanager(tmp_path / "am")
    with alertmanager:
        alertmanager.start(AM_CONFIG)
        assert alertmanager.url.startswith("http://127.0.0.1:")
        assert alertmanager.alerts() == []
        posted = httpx.post(
            f"{alertmanager.url}/api/v2/alerts", json=[{"labels": {"alertname": "Posted", "site": "uc"}}], timeout=10
        )
        assert posted.status_code == 200
        [alert] = alertmanager.alerts()
        assert alert["labels"] == {"alertname": "Posted", "site": "uc"}
        assert alert["status"]["state"] == "active"
        assert_stops(alertmanager)


def test_a_rule_fires_through_prometheus_into_alertmanager(
    tmp_path: Path, exposition: tuple[str, CollectorRegistry]
) -> None:
    target, _ = exposition
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n"
        "  - name: demo\n"
        "    rules:\n"
        "      - alert: TooFewNodes\n"
        "        expr: demo_nodes_available < 10\n"
        "        labels: {severity: page}\n"
    )
    with Alertmanager(tmp_path / "am") as alertmanager, Prometheus(tmp_path / "prom") as prometheus:
        alertmanager.start(AM_CONFIG)
        prometheus.start([target], rule_files=[rules], alertmanager=alertmanager.url)
        prometheus.wait_for('ALERTS{alertname="TooFewNodes", alertstate="firing"}')
        deadline = time.monotonic() + 30
        while not (alerts := alertmanager.alerts()) and time.monotonic() < deadline:
            time.sleep(0.2)
        [alert] = alerts
        assert alert["labels"]["alertname"] == "TooFewNodes"
        assert alert["labels"]["severity"] == "page"
        assert_stops(prometheus)
        assert_stops(alertmanager)
