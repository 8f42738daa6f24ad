"""Nova: servers by status (all projects), when the catalog has compute."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector


@collector
class NovaCollector(Collector):
    name = "nova"

    def collect(self) -> Iterable[Metric]:
        servers = GaugeMetricFamily("hammersmith_nova_servers", "Nova servers by status.", labels=["site", "status"])
        for site, snap in self.snapshots("nova"):
            for status, count in sorted(
                Counter(s.get("status") or "UNKNOWN" for s in snap.data["servers"] or []).items()
            ):
                servers.add_metric([site, status], count)
        yield servers
