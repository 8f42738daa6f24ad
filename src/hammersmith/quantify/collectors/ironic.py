"""Ironic: every node (openstack-exporter compatible), counts by state, errors, and when each state began."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector

#: the labels of openstack-exporter's openstack_ironic_node, so its dashboards and alerts keep working
NODE_LABELS = (
    "id",
    "name",
    "provision_state",
    "power_state",
    "maintenance",
    "console_enabled",
    "resource_class",
    "deploy_kernel",
    "deploy_ramdisk",
    "retired",
    "retired_reason",
)


def _bool(value: object) -> str:
    return "true" if value else "false"


@collector
class IronicCollector(Collector):
    name = "ironic"

    def collect(self) -> Iterable[Metric]:
        node = GaugeMetricFamily(
            "openstack_ironic_node",
            "One series per Ironic node (value 1), labelled with its state.",
            labels=["site", *NODE_LABELS],
        )
        nodes = GaugeMetricFamily(
            "hammersmith_ironic_nodes",
            "Ironic nodes by provision state, maintenance and resource class.",
            labels=["site", "provision_state", "maintenance", "resource_class"],
        )
        last_error = GaugeMetricFamily(
            "hammersmith_ironic_node_last_error",
            "1 when the node has a last_error (Ironic may clear it about a minute after a failure).",
            labels=["site", "id", "name"],
        )
        since = GaugeMetricFamily(
            "hammersmith_ironic_node_provision_state_since_timestamp_seconds",
            "When the node entered its current provision state; time() minus this is the time spent in it.",
            labels=["site", "id", "name", "provision_state"],
        )
        for site, snap in self.snapshots("ironic"):
            counts: Counter[tuple[str, str, str]] = Counter()
            for n in snap.nodes:
                uuid, name, state = n["uuid"], n.get("name") or n["uuid"], n["provision_state"] or "none"
                driver_info = n.get("driver_info") or {}
                node.add_metric(
                    [
                        site,
                        uuid,
                        name,
                        state,
                        n.get("power_state") or "none",
                        _bool(n.get("maintenance")),
                        _bool(n.get("console_enabled")),
                        n.get("resource_class") or "",
                        str(driver_info.get("deploy_kernel") or ""),
                        str(driver_info.get("deploy_ramdisk") or ""),
                        _bool(n.get("retired")),
                        n.get("retired_reason") or "",
                    ],
                    1,
                )
                counts[(state, _bool(n.get("maintenance")), n.get("resource_class") or "")] += 1
                last_error.add_metric([site, uuid, name], 1 if n.get("last_error") else 0)
                changed = n.get("provision_updated_at") or n.get("created_at")
                if changed:
                    since.add_metric([site, uuid, name, state], datetime.fromisoformat(changed).timestamp())
            for labels, count in sorted(counts.items()):
                nodes.add_metric([site, *labels], count)
        yield from (node, nodes, last_error, since)
