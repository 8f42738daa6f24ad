"""reads: one real, cheap read call per service in the catalog, each timed on its own."""

from __future__ import annotations

from typing import Any

from hammersmith.cloud.connection import SERVICES
from hammersmith.cloud.snapshot import IRONIC_MICROVERSION
from hammersmith.detect.probes import ProbeContext, ProbeResult, checked, probe, result, timed

#: service type -> (path, GET kwargs): the smallest read that still goes through the service's database
READS: dict[str, tuple[str, dict[str, Any]]] = {
    "baremetal": ("/nodes?limit=1", {"microversion": IRONIC_MICROVERSION}),
    "network": ("/networks?limit=1", {}),
    "compute": ("/servers?limit=1", {}),
    "placement": ("/", {}),
    "reservation": ("/leases", {}),
}


@probe("reads")
def reads(ctx: ProbeContext) -> ProbeResult:
    """GET one item from each service the catalog has (Ironic nodes, Neutron networks, Nova servers, ...)."""
    steps = []
    for service_type, (path, kwargs) in READS.items():
        client = ctx.connection.adapter(service_type)
        if client is None:
            continue
        step, _ = timed(SERVICES[service_type], lambda c=client, p=path, k=kwargs: checked(c.get(p, **k)))
        steps.append(step)
    return result("reads", steps)
