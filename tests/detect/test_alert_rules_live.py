"""The staleness alerts on series a real Prometheus scraped from real agents (issue 10, item 17).

promtool's cases write `hammersmith_schedule_interval_seconds` by hand, so they could not see that a
label named `job` is renamed `exported_job` by the scrape (Prometheus sets `job` itself) and that the
rules' interval selectors then match nothing. Here two `hammersmith run` agents against a testbed of
this module's own are scraped by Prometheus loaded with the shipped rules; the only overrides are
`for: 0s` and no 15/30-minute floor on "three intervals" (a test cannot wait that long). The
fallbacks for agents that export no interval keep their 900/1800 s, so an alert within seconds can
only come from the rules reading the interval.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hammersmith.cli.rules import RULES_DIR
from hammersmith.testbed import lifecycle
from hammersmith.testbed.ironic import CLOUD_NAME, free_port
from hammersmith.testbed.prometheus import Prometheus, missing_binaries
from tests.conftest import Testbed, _quiet_step

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_binaries()), reason="scripts/setup --test installs prometheus"),
]
INTERVAL = 5  # the agents' sweep_interval_seconds: "three intervals" are 15 s
STALENESS = ("HammersmithSnapshotStale", "HammersmithSweepNotSucceeding", "SmokeScenarioStale")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A small testbed of this module's own: the test freezes its Ironic."""
    workdir = tmp_path_factory.mktemp("livebed")
    state = lifecycle.up(workdir, 3, free_port(), _quiet_step)
    try:
        yield Testbed(workdir, state)
    finally:
        lifecycle.down(workdir)


def shipped_rules_for_test(directory: Path) -> Path:
    """The shipped rules with `for: 0s` and "three intervals" without their 15/30-minute floor."""
    text = (RULES_DIR / "hammersmith.rules.yml").read_text()
    text = re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", text)
    floor = r'clamp_min\((3 \* hammersmith_schedule_interval_seconds\{schedule="cycle"\}), \d+\)'
    text, floors = re.subn(floor, r"(\1)", text)
    assert floors == 2, "HammersmithSnapshotStale and HammersmithSweepNotSucceeding each have one floor"
    path = directory / "hammersmith.rules.yml"
    path.write_text(text)
    return path


def firing(prometheus: Prometheus, site: str) -> dict[str, float]:
    """The site's firing alerts (Prometheus' alerts API): name -> the value of its expression."""
    body = httpx.get(f"{prometheus.url}/api/v1/alerts", timeout=10).json()
    return {
        alert["labels"]["alertname"]: float(alert["value"])
        for alert in body["data"]["alerts"]
        if alert["labels"].get("site") == site and alert["state"] == "firing"
    }


def wait(what: str, probe: Callable[[], Any], timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.3)
    return value


def test_staleness_alerts_read_the_interval_the_agent_exports(
    bed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lab: the bed's Ironic; gone: an Ironic nobody runs (every sweep fails, none ever succeeded)
    clouds = yaml.safe_load((bed.workdir / "clouds.yaml").read_text())
    nobody = f"http://127.0.0.1:{free_port()}"
    clouds["clouds"]["gone"] = {**clouds["clouds"][CLOUD_NAME], "baremetal_endpoint_override": nobody}
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    # lab's listings may hang for 2 minutes: longer than the test waits for its snapshot to go stale
    site = {"sweep_interval_seconds": INTERVAL, "timeout_seconds": 120, "probes": {"interval_seconds": 3600}}
    site["smoke"] = {"cheap_interval_seconds": 0, "expensive_interval_seconds": 0}
    sites = {"lab": {"cloud": CLOUD_NAME, **site}, "gone": {"cloud": "gone", **site}}
    config = tmp_path / "hammersmith.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path), "sites": sites}))
    ports = {name: free_port() for name in sites}
    ironic = bed.state.pid
    assert ironic is not None

    agents: dict[str, subprocess.Popen[bytes]] = {}
    prometheus = Prometheus(tmp_path / "prometheus")
    frozen = False
    try:
        for name, port in ports.items():
            with (tmp_path / f"{name}.log").open("wb") as log:
                agents[name] = subprocess.Popen(
                    [sys.executable, "-m", "hammersmith", "--config", str(config)]
                    + ["run", "--site", name, "--listen", f"127.0.0.1:{port}"],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )
        prometheus.start(
            [f"127.0.0.1:{port}" for port in ports.values()], rule_files=[shipped_rules_for_test(tmp_path)]
        )

        # the scraped interval carries `schedule`; `job` is the target's; no label of any family was renamed
        series = prometheus.wait_for("hammersmith_schedule_interval_seconds", lambda r: len(r) == 8)
        assert {(s["metric"]["site"], s["metric"]["schedule"], s["metric"]["job"]) for s in series} == {
            (name, schedule, "hammersmith") for name in sites for schedule in ("cycle", "probes", "smoke")
        }
        assert prometheus.query('{exported_job=~".+"} or {exported_instance=~".+"}') == []
        [threshold] = prometheus.query('3 * hammersmith_schedule_interval_seconds{site="lab",schedule="cycle"}')
        assert float(threshold["value"][1]) == 3 * INTERVAL

        # gone: no sweep ever succeeded; the agent says so by exporting its probes' schedule (value -1)
        gone = wait("gone's alert", lambda: "HammersmithSweepNotSucceeding" in (f := firing(prometheus, "gone")) and f)
        assert gone["HammersmithSweepNotSucceeding"] == -1

        # lab is healthy: once its first sweep is scraped, neither alert fires for five evaluations
        prometheus.wait_for('hammersmith_sweep_last_success_timestamp_seconds{site="lab"}')
        wait("lab's first sweep to clear the alerts", lambda: not firing(prometheus, "lab"), timeout=10)
        for _ in range(10):
            assert firing(prometheus, "lab") == {}
            time.sleep(0.5)
        rules = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        health = {r["name"]: (r["health"], r.get("lastError", "")) for g in rules for r in g["rules"]}
        assert {name: health[name] for name in STALENESS} == dict.fromkeys(STALENESS, ("ok", ""))

        # freeze lab's Ironic: its listings hang, no snapshot comes, no sweep succeeds; both fire after
        # three intervals, well before the 900/1800 s an agent without the interval would be judged by
        os.killpg(ironic, signal.SIGSTOP)
        frozen = True
        both = {"HammersmithSnapshotStale", "HammersmithSweepNotSucceeding"}
        stale = wait("lab's staleness alerts", lambda: both <= (f := firing(prometheus, "lab")).keys() and f)
        assert 3 * INTERVAL < stale["HammersmithSnapshotStale"] < 900, stale
        assert 3 * INTERVAL < stale["HammersmithSweepNotSucceeding"] < 1800, stale
        assert all(agent.poll() is None for agent in agents.values())
    finally:
        if frozen:  # lab's agent finishes its hung sweep, so it can stop
            os.killpg(ironic, signal.SIGCONT)
        for agent in agents.values():
            agent.terminate()
        for agent in agents.values():
            agent.wait(timeout=60)
        prometheus.stop()
