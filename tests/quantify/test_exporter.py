"""/metrics as a whole: a failing collector leaves a partial scrape, cached families follow each cycle,
and the output passes `promtool check metrics`."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from hammersmith.quantify.collectors import Collector, load
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.testbed.prometheus import missing_binaries, promtool_check_metrics
from tests.quantify.conftest import node, snapshot


class Broken(Collector):
    name = "broken"

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("hammersmith_half_built", "never seen", value=1)
        raise RuntimeError("bug in a plugin")


def samples(text: bytes) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_failing_collector_gives_partial_scrape_and_error_counter() -> None:
    telemetry = Telemetry(["lab"])
    telemetry.record(snapshot(nodes=[node("n1")]), [], None)
    exporter = Exporter(telemetry, {**load(), "broken": Broken})
    text = exporter.render()
    assert b"hammersmith_half_built" not in text  # a half-built collector is left out whole
    assert b"openstack_ironic_node{" in text
    assert samples(text)["hammersmith_exporter_collector_errors_total[('collector', 'broken')]"] == 1
    assert samples(exporter.render())["hammersmith_exporter_collector_errors_total[('collector', 'broken')]"] == 2


def test_static_families_are_rendered_once_per_cycle() -> None:
    telemetry = Telemetry(["lab"])
    calls = []

    class Counting(Collector):
        name = "counting"

        def collect(self) -> Iterable[Metric]:
            calls.append(1)
            yield GaugeMetricFamily("hammersmith_counting", "test", value=len(calls))

    exporter = Exporter(telemetry, {"counting": Counting})
    assert b"hammersmith_counting 1.0" in exporter.render()
    assert b"hammersmith_counting 1.0" in exporter.render()
    assert len(calls) == 1
    telemetry.record(snapshot(nodes=[node("n1")]), [], None)  # a new cycle
    assert b"hammersmith_counting 2.0" in exporter.render()


def test_ages_are_fresh_on_every_scrape_even_when_cached() -> None:
    telemetry = Telemetry(["lab"])
    telemetry.record(snapshot(nodes=[node("n1")], age_seconds=5), [], None)
    exporter = Exporter(telemetry)
    first = samples(exporter.render())["hammersmith_snapshot_age_seconds[('site', 'lab')]"]
    second = samples(exporter.render())["hammersmith_snapshot_age_seconds[('site', 'lab')]"]
    assert second > first >= 5


@pytest.mark.skipif(bool(missing_binaries()), reason="promtool not installed (scripts/setup --test installs it)")
def test_full_output_passes_promtool() -> None:
    telemetry = Telemetry(["east", "west"])
    servers = [{"id": "s1", "status": "ERROR", "tenant_id": "p1"}]
    telemetry.record(snapshot("east", nodes=[node("n1"), node("n2", "deploy failed")], servers=servers), [], None)
    telemetry.record(snapshot("west", incomplete=("neutron",), leases=[{"id": "l", "status": "ACTIVE"}]), [], None)
    telemetry.record_failure("west", "login failed", login_failed=True)
    telemetry.observer("east")("ironic", "200", 0.01)
    text = Exporter(telemetry).render().decode()
    assert promtool_check_metrics(text) == []
