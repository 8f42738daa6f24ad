"""Neutron: ports and floating IPs, bound or idle (idle ones are the leak operators clean up)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector


def port_state(port: dict[str, Any]) -> str:
    """bound: attached and plugged; binding_failed: attached but no driver could plug it; idle: attached to nothing."""
    if port.get("binding:vif_type") == "binding_failed":
        return "binding_failed"
    return "bound" if port.get("device_id") else "idle"


@collector
class NeutronCollector(Collector):
    name = "neutron"

    def collect(self) -> Iterable[Metric]:
        ports = GaugeMetricFamily(
            "hammersmith_neutron_ports",
            "Neutron ports by state (bound, idle, binding_failed).",
            labels=["site", "state"],
        )
        fips = GaugeMetricFamily(
            "hammersmith_neutron_floating_ips",
            "Floating IPs, associated to a port or idle.",
            labels=["site", "state"],
        )
        for site, snap in self.snapshots("neutron"):
            by_state = Counter({"bound": 0, "idle": 0, "binding_failed": 0})
            by_state.update(port_state(p) for p in snap.data["network_ports"] or [])
            for state, count in sorted(by_state.items()):
                ports.add_metric([site, state], count)
            fip_states = Counter({"associated": 0, "idle": 0})
            fip_states.update("associated" if f.get("port_id") else "idle" for f in snap.data["floating_ips"] or [])
            for state, count in sorted(fip_states.items()):
                fips.add_metric([site, state], count)
        yield from (ports, fips)
