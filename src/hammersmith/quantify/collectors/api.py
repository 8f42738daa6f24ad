"""The agent's own OpenStack calls: requests by status, errors, and a latency histogram per service."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric

from hammersmith.quantify.collectors import Collector, collector


@collector
class ApiCollector(Collector):
    name = "api"
    dynamic = True  # counted live, request by request (hammers' calls too, not only the snapshot's)

    def collect(self) -> Iterable[Metric]:
        for metric in (self.telemetry.api_requests, self.telemetry.api_errors, self.telemetry.api_latency):
            yield from metric.collect()
