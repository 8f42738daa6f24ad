"""Smoke: each scenario's latest result, how long it took and when it last ran, per set."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector


@collector
class SmokeCollector(Collector):
    name = "smoke"
    topic = "smoke"

    def collect(self) -> Iterable[Metric]:
        labels = ["site", "set", "scenario"]
        success = GaugeMetricFamily(
            "hammersmith_smoke_success",
            "1 when the scenario's latest run passed, 0 when it failed or left something behind (skipped: no series).",
            labels=labels,
        )
        duration = GaugeMetricFamily(
            "hammersmith_smoke_duration_seconds",
            "How long the scenario's latest run took, cleanup included.",
            labels=labels,
        )
        last_run = GaugeMetricFamily(
            "hammersmith_smoke_last_run_timestamp_seconds",
            "When the scenario's latest run finished (Unix time), whatever its result.",
            labels=labels,
        )
        for site, view in self.views():
            for (smoke_set, scenario), result in sorted(view.smoke.items()):
                values = [site, smoke_set, scenario]
                last_run.add_metric(values, result.started_at + result.seconds)
                if result.status == "skipped":
                    continue
                success.add_metric(values, 1 if result.status == "passed" else 0)
                duration.add_metric(values, result.seconds)
        yield from (success, duration, last_run)
