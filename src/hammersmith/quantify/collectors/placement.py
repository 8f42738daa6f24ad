"""Placement: how many resource providers (one per Ironic node that Nova's compute service registered)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector


@collector
class PlacementCollector(Collector):
    name = "placement"

    def collect(self) -> Iterable[Metric]:
        providers = GaugeMetricFamily(
            "hammersmith_placement_resource_providers", "Placement resource providers.", labels=["site"]
        )
        for site, snap in self.snapshots("placement"):
            providers.add_metric([site], len(snap.data["resource_providers"] or []))
        yield providers
