"""The exporter over the Keystone + Neutron testbed, scraped by a real Prometheus; and Keystone trouble."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from hammersmith.testbed import lifecycle
from hammersmith.testbed.ironic import free_port
from hammersmith.testbed.prometheus import Prometheus, missing_binaries, promtool_check_metrics
from tests.conftest import Testbed

pytestmark = pytest.mark.integration
INTERVAL = 5


@dataclass
class Exporter:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    password: str

    def scrape(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).raise_for_status().text
        return {
            s.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}": s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def wait(self, series: str, predicate: Callable[[float | None], bool], timeout: float = 60) -> dict[str, float]:
        """Scrape until `predicate(value)` holds for the series (None when absent)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                samples = self.scrape()
            except httpx.ConnectError:  # still starting
                assert self.proc.poll() is None, self.log.read_text()
                samples = {}
            if predicate(samples.get(series)):
                return samples
            if time.monotonic() > deadline:
                log = self.log.read_text()
                raise AssertionError(f"{series} = {samples.get(series)} after {timeout} s; log:\n{log}")
            time.sleep(0.5)

    def errors(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if " ERROR " in line]


@pytest.fixture(scope="module")
def exporter(
    keystone_testbed: Testbed, testbed: Testbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exporter]:
    """`hammersmith exporter` as an operator runs it, for two sites: `testbed` (Keystone, password auth,
    Neutron) and `plain` (the Ironic-only testbed), each from its own clouds.yaml entry."""
    directory = tmp_path_factory.mktemp("exporter")
    clouds = {
        name: yaml.safe_load((bed.workdir / "clouds.yaml").read_text())["clouds"]["hammersmith-testbed"]
        for name, bed in (("keystone-cloud", keystone_testbed), ("plain-cloud", testbed))
    }
    (directory / "clouds.yaml").write_text(yaml.safe_dump({"clouds": clouds}))
    port = free_port()
    sites = {
        "testbed": {"cloud": "keystone-cloud", "sweep_interval_seconds": INTERVAL, "timeout_seconds": 5},
        "plain": {"cloud": "plain-cloud", "sweep_interval_seconds": INTERVAL},
    }
    config = directory / "hammersmith.yaml"
    config.write_text(
        yaml.safe_dump({"state_dir": str(directory), "http": {"listen": f"127.0.0.1:{port}"}, "sites": sites})
    )
    log = directory / "exporter.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hammersmith", "--config", str(config), "exporter"],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    running = Exporter(proc, f"http://127.0.0.1:{port}", log, keystone_testbed.state.passwords["hammersmith"])
    try:
        for site in sites:
            running.wait(f'hammersmith_cycles_total{{result="ok",site="{site}"}}', lambda v: bool(v))
        yield running
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.skipif(bool(missing_binaries()), reason="prometheus not installed (scripts/setup --test installs it)")
def test_prometheus_scrapes_the_exporter_over_keystone(
    exporter: Exporter, keystone_testbed: Testbed, testbed: Testbed, tmp_path: Path
) -> None:
    nodes = keystone_testbed.state.nodes
    with Prometheus(tmp_path / "prometheus") as prometheus:
        prometheus.start([exporter.url.removeprefix("http://")])
        site = 'site="testbed"'
        assert prometheus.wait_for(f"count(openstack_ironic_node{{{site}}}) == {nodes}")
        (up,) = prometheus.wait_for(f'hammersmith_service_up{{{site},service="keystone"}} == 1')
        assert prometheus.query(f'hammersmith_service_up{{{site},service="neutron"}} == 1')
        assert prometheus.query(f"hammersmith_snapshot_complete{{{site}}} == 1")
        # one fresh login per cycle, and a constant number of list calls (one page each here; keystone: projects and
        # users; neutron: ports, networks, floating IPs)
        assert prometheus.query(f'hammersmith_snapshot_requests{{{site},service="keystone"}} == 3')
        assert prometheus.query(f'hammersmith_snapshot_requests{{{site},service="ironic"}} == 3')
        assert prometheus.query(f'hammersmith_snapshot_requests{{{site},service="neutron"}} == 3')
        available = prometheus.query(f'sum(hammersmith_ironic_nodes{{{site},provision_state="available"}})')
        assert float(available[0]["value"][1]) == nodes
        assert prometheus.query(f'hammersmith_neutron_floating_ips{{{site},state="idle"}}')
        assert prometheus.query(f'hammersmith_api_request_duration_seconds_count{{{site},service="keystone"}} > 0')
        # one exporter, every site of its config, told apart by the site label
        plain = prometheus.query('count(openstack_ironic_node{site="plain"})')
        assert float(plain[0]["value"][1]) == testbed.state.nodes
        assert not prometheus.query('hammersmith_service_up{site="plain",service="keystone"}')  # noauth: no login
        (target,) = prometheus.targets()
        assert target["health"] == "up", target
    text = httpx.get(f"{exporter.url}/metrics", timeout=10).text
    assert promtool_check_metrics(text) == []


def test_keystone_down_keeps_serving_the_last_snapshot_and_recovers(
    exporter: Exporter, keystone_testbed: Testbed
) -> None:
    site = 'site="testbed"'
    failed = f'hammersmith_cycles_total{{result="failed",{site}}}'
    before = exporter.scrape()
    plain_ok = 'hammersmith_cycles_total{result="ok",site="plain"}'
    lifecycle.stop_service(keystone_testbed.workdir, "keystone")
    try:
        down = exporter.wait(f'hammersmith_service_up{{service="keystone",{site}}}', lambda v: v == 0)
        later = exporter.wait(failed, lambda v: v is not None and v >= down[failed] + 1)
    finally:
        lifecycle.start_service(keystone_testbed.workdir, "keystone")
    # no cross-site coupling: the other site kept its cycles going meanwhile
    assert later[plain_ok] > before[plain_ok]
    assert later['hammersmith_service_up{service="ironic",site="plain"}'] == 1
    age = f"hammersmith_snapshot_age_seconds{{{site}}}"
    assert later[age] > down[age] >= INTERVAL  # the old snapshot is served, older each time
    nodes = [k for k in later if k.startswith("openstack_ironic_node{") and k.endswith(f"{site}}}")]
    assert len(nodes) == keystone_testbed.state.nodes  # still the last snapshot's fleet, not an empty one
    assert later[f'hammersmith_service_up{{service="ironic",{site}}}'] == 0
    # one clear line per failed cycle, naming the site and the cause, and no secret
    errors = exporter.errors()  # a cycle may fail between the scrape and this read: count within both scrapes
    assert later[failed] - before.get(failed, 0) <= len(errors) <= exporter.scrape()[failed] - before.get(failed, 0)
    assert all("site testbed:" in line and "login failed" in line for line in errors), errors
    assert exporter.password not in exporter.log.read_text()
    exporter.wait(f'hammersmith_service_up{{service="keystone",{site}}}', lambda v: v == 1)
    recovered = exporter.wait(age, lambda v: v is not None and v < INTERVAL + 5)
    assert recovered[f"hammersmith_snapshot_complete{{{site}}}"] == 1


def test_wrong_credentials_are_reported_without_the_secret_and_recover(
    exporter: Exporter, keystone_testbed: Testbed
) -> None:
    site = 'site="testbed"'
    wrong = "not-the-password-" + exporter.password[:4]
    errors_before = len(exporter.errors())
    lifecycle.set_password(keystone_testbed.workdir, "hammersmith", wrong)
    try:
        exporter.wait(f'hammersmith_service_up{{service="keystone",{site}}}', lambda v: v == 0)
    finally:
        lifecycle.set_password(keystone_testbed.workdir, "hammersmith", exporter.password)
    exporter.wait(f'hammersmith_service_up{{service="keystone",{site}}}', lambda v: v == 1)
    new = exporter.errors()[errors_before:]
    assert new and all("login failed" in line and "401" in line for line in new), new
    text = exporter.log.read_text()
    assert exporter.password not in text and wrong not in text
