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


def counting(calls: list[int]) -> type[Collector]:
    """A collector that counts its renders, and shows the count."""

    class Counting(Collector):
        name = "counting"

        def collect(self) -> Iterable[Metric]:
            calls.append(1)
            yield GaugeMetricFamily("hammersmith_counting", "test", value=len(calls))

    return Counting


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
    calls: list[int] = []
    Counting = counting(calls)
    exporter = Exporter(telemetry, {"counting": Counting}, prime=False)
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


def test_a_new_cycle_is_rendered_by_the_cycle_not_by_the_next_scrape() -> None:
    telemetry = Telemetry(["lab"])
    calls: list[int] = []
    Counting = counting(calls)
    exporter = Exporter(telemetry, {"counting": Counting})
    telemetry.record(snapshot(nodes=[node("n1")]), [], None)
    assert len(calls) == 1  # rendered by record(), in the cycle's thread
    assert b"hammersmith_counting 1.0" in exporter.render()
    assert len(calls) == 1
    telemetry.generations["cycle"] += 1  # a cycle has recorded and is priming right now: the scrape does not render too
    assert b"hammersmith_counting 1.0" in exporter.render()
    assert len(calls) == 1


def test_docs_list_exactly_the_families_served() -> None:
    """docs/metrics.md is the operator's reference: every family served is in it, and nothing else."""
    import re
    from pathlib import Path

    telemetry = Telemetry(["lab"])
    full = snapshot(
        nodes=[node("n1")],
        servers=[{"id": "s", "status": "ACTIVE"}],
        network_ports=[],
        floating_ips=[],
        resource_providers=[],
        blazar_hosts=[],
        leases=[],
    )
    telemetry.record(full, [], None)
    served = {
        f.name
        for f in text_string_to_metric_families(Exporter(telemetry).render().decode())
        if not f.name.startswith("process_")
    }
    doc = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    documented = {name.removesuffix("_total") for name in re.findall(r"^\| `([a-z_]+)` \|", doc, re.M)}
    assert served == documented


def test_each_cycle_freezes_the_heap_and_hands_it_back_periodically() -> None:
    import gc

    from hammersmith.quantify import exporter as exporter_mod

    telemetry = Telemetry(["lab"])
    Exporter(telemetry)
    try:
        telemetry.record(snapshot(nodes=[node("n1")]), [], None)
        assert gc.get_freeze_count() > 0
        for _ in range(exporter_mod.UNFREEZE_EVERY - 1):
            telemetry.record(snapshot(nodes=[node("n1")]), [], None)
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_a_probe_run_rerenders_only_the_probe_families() -> None:
    from hammersmith.detect.probes import ProbeResult

    telemetry = Telemetry(["lab"])
    calls: list[int] = []
    exporter = Exporter(telemetry, {**load(), "counting": counting(calls)})
    telemetry.record(snapshot(nodes=[node("n1")]), [], None)
    assert len(calls) == 1
    telemetry.record_probes("lab", [ProbeResult("token", "passed")])
    assert len(calls) == 1  # the node families were not rendered again for a probe result
    text = exporter.render()
    assert b'hammersmith_probe_success{probe="token",site="lab"} 1.0' in text and len(calls) == 1
