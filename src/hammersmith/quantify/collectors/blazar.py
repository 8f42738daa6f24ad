"""Blazar: reservable hosts and leases by status (Chameleon's reservation layer, read through the SDK session)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector


@collector
class BlazarCollector(Collector):
    name = "blazar"

    def collect(self) -> Iterable[Metric]:
        hosts = GaugeMetricFamily(
            "hammersmith_blazar_hosts",
            "Hosts enrolled in Blazar, by whether they are reservable.",
            labels=["site", "reservable"],
        )
        leases = GaugeMetricFamily("hammersmith_blazar_leases", "Blazar leases by status.", labels=["site", "status"])
        for site, snap in self.snapshots("blazar"):
            reservable = Counter({"true": 0, "false": 0})
            reservable.update(
                "true" if _truthy(h.get("reservable", True)) else "false" for h in snap.data["blazar_hosts"] or []
            )
            for value, count in sorted(reservable.items()):
                hosts.add_metric([site, value], count)
            for status, count in sorted(
                Counter(lease.get("status") or "UNKNOWN" for lease in snap.data["leases"] or []).items()
            ):
                leases.add_metric([site, status], count)
        yield from (hosts, leases)


def _truthy(value: object) -> bool:
    """Blazar answers booleans, but older releases stored them as strings."""
    return value not in (False, "false", "False", 0, None)
