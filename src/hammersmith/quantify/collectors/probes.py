"""Probes: whether each black-box probe passed, each step's time, and when each https certificate expires."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector


@collector
class ProbesCollector(Collector):
    name = "probes"
    topic = "probes"

    def collect(self) -> Iterable[Metric]:
        success = GaugeMetricFamily(
            "hammersmith_probe_success",
            "1 when the probe's latest run passed every step, 0 when a step failed (skipped probes: no series).",
            labels=["site", "probe"],
        )
        duration = GaugeMetricFamily(
            "hammersmith_probe_duration_seconds",
            "How long each step of the probe's latest run took.",
            labels=["site", "probe", "step"],
        )
        expiry = GaugeMetricFamily(
            "hammersmith_tls_certificate_expiry_timestamp_seconds",
            "When the certificate of an https endpoint in the catalog expires (notAfter, Unix time).",
            labels=["site", "service", "endpoint"],
        )
        for site, view in self.views():
            for name, result in sorted(view.probes.items()):
                if result.status == "skipped":
                    continue
                success.add_metric([site, name], 1 if result.status == "passed" else 0)
                for step in result.steps:
                    duration.add_metric([site, name, step.name], step.seconds)
                for (service, endpoint), not_after in sorted(result.tls_expiry.items()):
                    expiry.add_metric([site, service, endpoint], not_after)
        yield from (success, duration, expiry)
