"""Every probe and smoke outcome lands in the store (detect_results), from the one-shot commands and from the
agent's schedules, against the real Ironic of the light testbed; and the sweep's retention drops them after 100
days."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hammersmith import config
from hammersmith.cli import detect as cli_detect
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.store import Store, open_store
from hammersmith.store.results import ResultRow
from tests.conftest import Testbed, hammersmith, ironic_answers_500


@pytest.fixture
def store(testbed: Testbed) -> Iterator[Store]:
    """The testbed's own store (its hammersmith.yaml), where the commands record."""
    settings = config.load(testbed.workdir / "hammersmith.yaml")
    opened = open_store(settings.effective_store_url, settings.state_dir)
    try:
        yield opened
    finally:
        opened.close()


def newest(store: Store, site: str, source: str, since: datetime) -> dict[str, ResultRow]:
    found: dict[str, ResultRow] = {}
    for row in reversed(store.results(site=site, source=source, since=since)):
        found[row.name] = row
    return found


def test_the_probe_command_records_each_probe(testbed: Testbed, store: Store) -> None:
    before = datetime.now(UTC)
    cli = hammersmith("probe", "--json", cwd=testbed.workdir)
    assert cli.returncode == 0, cli.stderr
    site = json.loads(cli.stdout)["site"]
    rows = newest(store, site, "probe", before)
    assert {name: r.status for name, r in rows.items()} == {
        "token": "skipped",
        "catalog": "passed",
        "reads": "passed",
        "tls": "skipped",
    }
    assert rows["token"].message == "auth_type none: the site issues no tokens"
    assert rows["reads"].message is None and rows["reads"].seconds > 0 and rows["reads"].started_at >= before
    assert all(r.report is None for r in rows.values())


def test_a_broken_ironic_is_recorded_failed_with_the_ctrf_report(testbed: Testbed, store: Store) -> None:
    """Ironic failing its detailed node listing: the expensive set cannot pick a node (recorded failed, with its
    report); the cheap set's plain listing does not decode the broken row and passes."""
    before = datetime.now(UTC)
    with ironic_answers_500(testbed):
        cli = hammersmith("smoke", "run", "--set", "expensive", "--json", cwd=testbed.workdir)
        cheap = hammersmith("smoke", "run", "--set", "cheap", cwd=testbed.workdir)
    assert cli.returncode == 1, cli.stderr
    assert cheap.returncode == 0, cheap.stderr
    run = json.loads(cli.stdout)
    rows = newest(store, run["site"], "smoke", before)
    assert {name: r.status for name, r in rows.items()} == {
        "deploy-node": "failed",
        "reserve-and-boot": "skipped",
        "token-issue": "skipped",
        "list-nodes": "passed",
        "network-port": "skipped",
    }
    assert "HTTP 500" in (rows["deploy-node"].message or "")
    report = rows["deploy-node"].report
    assert report == run["reports"]["ctrf"] and Path(report).exists()
    assert json.loads(Path(report).read_text())["results"]["summary"]["failed"] == 1
    assert rows["list-nodes"].report != report and rows["deploy-node"].started_at >= before


def test_the_agent_schedules_record_into_the_store(
    testbed: Testbed, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedules' threads record as they run, and `finish` closes the store they opened."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(testbed.workdir / "clouds.yaml"))
    settings = config.load(testbed.workdir / "hammersmith.yaml")
    name, site = settings.site(None)
    site = site.model_copy(
        update={
            "probes": site.probes.model_copy(update={"interval_seconds": 5}),
            "smoke": site.smoke.model_copy(update={"cheap_interval_seconds": 1, "expensive_interval_seconds": 0}),
        }
    )
    settings = settings.model_copy(update={"sites": {name: site}})
    before = datetime.now(UTC)
    stop = threading.Event()
    threads = cli_detect.schedule(settings, name, Telemetry([name]), stop)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probed = store.results(site=name, source="probe", since=before)
            if "list-nodes" in newest(store, name, "smoke", before) and len(probed) >= 8:
                break
            time.sleep(0.3)
    finally:
        cli_detect.finish(threads, stop, 30)
    assert stop not in cli_detect._stores  # closed with the schedules
    probes = store.results(site=name, source="probe", since=before)
    assert {r.name for r in probes} == {"token", "catalog", "reads", "tls"} and len(probes) >= 8  # two runs
    assert newest(store, name, "smoke", before)["list-nodes"].status == "passed"


def test_the_sweep_purges_results_older_than_100_days(testbed: Testbed, store: Store) -> None:
    now = datetime.now(UTC)
    site = config.load(testbed.workdir / "hammersmith.yaml").site(None)[0]
    kept_at, purged_at = now - timedelta(days=99), now - timedelta(days=101)
    for when in (kept_at, purged_at):
        store.record_result(site=site, source="probe", name="retention", status="passed", started_at=when, seconds=1)
    cli = hammersmith("sweep", cwd=testbed.workdir)
    assert cli.returncode == 0, cli.stderr
    left = store.results(site=site, name="retention")
    assert [r.started_at for r in left] == [kept_at]
