"""Blazar: reservable hosts per node type, leases by status, maintenance leases, and lease starts that failed
(Chameleon's reservation layer, read through the SDK session)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector


@collector
class BlazarCollector(Collector):
    name = "blazar"

    def collect(self) -> Iterable[Metric]:
        hosts = GaugeMetricFamily(
            "hammersmith_blazar_hosts",
            "Hosts enrolled in Blazar, by whether they are reservable and by node type (extra capability).",
            labels=["site", "reservable", "node_type"],
        )
        leases = GaugeMetricFamily("hammersmith_blazar_leases", "Blazar leases by status.", labels=["site", "status"])
        maintenance = GaugeMetricFamily(
            "hammersmith_blazar_maintenance_leases",
            "Blazar leases whose name matches the site's policy.maintenance_lease_pattern, by status.",
            labels=["site", "status"],
        )
        start_failures = CounterMetricFamily(
            "hammersmith_blazar_lease_start_failures",
            "Leases whose start Blazar marked failed (start_lease event in ERROR), per project, since the agent "
            "started.",
            labels=["site", "project", "project_name"],
        )
        for site, view in self.views():
            for (_, project), count in sorted(view.lease_start_failures.items()):
                start_failures.add_metric([site, project, view.project_names.get(project, "")], count)
            snap = view.snapshot
            if snap is None or not snap.complete("blazar"):
                continue
            by_type: Counter[tuple[str, str]] = Counter()
            for host in snap.data["blazar_hosts"] or []:
                by_type[("true" if _truthy(host.get("reservable", True)) else "false", _node_type(host))] += 1
            for node_type in {t for _, t in by_type} or {""}:  # both values per type: "false" is seen going to 0
                by_type.update({("true", node_type): 0, ("false", node_type): 0})
            for (reservable, node_type), count in sorted(by_type.items()):
                hosts.add_metric([site, reservable, node_type], count)
            pattern = re.compile(view.maintenance_lease_pattern)
            statuses: Counter[str] = Counter()
            held: Counter[str] = Counter()
            for lease in snap.data["leases"] or []:
                status = lease.get("status") or "UNKNOWN"
                statuses[status] += 1
                held[status] += 1 if pattern.search(lease.get("name") or "") else 0
            for status, count in sorted(statuses.items()):
                leases.add_metric([site, status], count)
                maintenance.add_metric([site, status], held[status])
        yield from (hosts, leases, maintenance, start_failures)


def _node_type(host: dict[str, object]) -> str:
    """Chameleon's `node_type` extra capability, which Blazar returns as a top-level key of the host; "" if none."""
    value = host.get("node_type")
    return str(value) if value is not None else ""


def _truthy(value: object) -> bool:
    """Blazar answers booleans, but older releases stored them as strings."""
    return value not in (False, "false", "False", 0, None)
