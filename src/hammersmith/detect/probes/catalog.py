"""catalog: the service catalog lists the services hammersmith reads (Ironic at least)."""

from __future__ import annotations

from hammersmith.cloud.connection import SERVICES
from hammersmith.detect.probes import ProbeContext, ProbeResult, Step, probe, result, timed


@probe("catalog")
def catalog(ctx: ProbeContext) -> ProbeResult:
    """Find each service hammersmith reads in the catalog; fail when Ironic (baremetal) is missing."""
    step, found = timed("endpoints", ctx.catalog)
    steps = [step]
    info = {}
    if found is not None:
        info = {
            "services": {SERVICES[st]: url for st, url in sorted(found.items())},
            "missing": sorted(SERVICES[st] for st in SERVICES if st != "identity" and st not in found),
        }
        if "baremetal" not in found:
            steps.append(Step("baremetal", False, 0.0, "the catalog has no baremetal (Ironic) endpoint"))
    return result("catalog", steps, info=info)
