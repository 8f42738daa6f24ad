"""The agent's own HTTP server: open connections, and those its limits closed (slow, idle or surplus clients)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector
from hammersmith.web import limits

REASONS = ("evicted", "refused", "timed_out", "metrics_busy")


@collector
class HttpCollector(Collector):
    name = "http"
    dynamic = True  # connections come and go between cycles

    def collect(self) -> Iterable[Metric]:
        open_now = GaugeMetricFamily(
            "hammersmith_http_connections_open",
            "Connections open to the agent's HTTP server, counted from accept (TLS handshake included).",
        )
        open_now.add_metric([], sum(len(guard.open) for guard in list(limits.GUARDS)))
        closed = CounterMetricFamily(
            "hammersmith_http_requests_refused",
            "Connections closed or requests refused by the server's limits since the agent started: evicted "
            "(oldest waiting connection, at http.max_connections), refused (full of busy ones), timed_out (headers "
            "or body late, or the answer not read), metrics_busy (503: too many /metrics requests at once).",
            labels=["reason"],
        )
        for reason in REASONS:
            closed.add_metric([reason], limits.CLOSED[reason])
        yield from (open_now, closed)
