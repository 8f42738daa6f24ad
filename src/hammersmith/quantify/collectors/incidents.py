"""The Alertmanager webhook: requests by answer, and firing incidents by alert (kept in memory by the agent)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector
from hammersmith.react.incidents import STATS


@collector
class IncidentsCollector(Collector):
    name = "incidents"
    dynamic = True  # requests arrive between cycles

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "hammersmith_webhook_requests",
            "POSTs to the Alertmanager webhook since the agent started, by HTTP status code.",
            labels=["code"],
        )
        incidents = GaugeMetricFamily(
            "hammersmith_incidents_open",
            "Incidents still firing, per site and alert name (refreshed after each webhook delivery).",
            labels=["site", "alertname"],
        )
        with STATS.lock:
            counts = sorted(STATS.requests.items())
            open_now = sorted(STATS.open.items())
        for code, count in counts:
            requests.add_metric([str(code)], count)
        for (site, alertname), count in open_now:
            incidents.add_metric([site, alertname], count)
        yield from (requests, incidents)
