"""One collection cycle for one site: read it (a snapshot, or a whole sweep), then tell the telemetry.

Shared by `hammersmith exporter` (snapshot only) and `hammersmith run` (the sweep's own snapshot),
so both export the same series. A site that cannot be read is logged once per cycle and recorded;
the previous snapshot keeps being served, with its age rising.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hammersmith.cloud.snapshot import LoginFailed, Snapshot
from hammersmith.config import Policy
from hammersmith.detect import checks
from hammersmith.errors import HammersmithError
from hammersmith.quantify.telemetry import LedgerView, Telemetry
from hammersmith.store import Store

log = logging.getLogger("hammersmith.agent")


def ledger_view(store: Store, site: str) -> LedgerView | None:
    try:
        return LedgerView.read(store, site)
    except Exception as exc:  # a store hiccup must not stop the metrics of the cloud itself
        log.error("site %s: cannot read the ledger: %s", site, exc)
        return None


def observe(
    telemetry: Telemetry, store: Store, site: str, policy: Policy, read: Callable[[], Snapshot]
) -> Snapshot | None:
    """Run `read` and record its snapshot with the findings of every check; on failure record that instead."""
    try:
        snap = read()
    except Exception as exc:
        message = str(exc) if isinstance(exc, HammersmithError) else f"{type(exc).__name__}: {exc}"
        log.error("site %s: cycle failed, serving the previous snapshot: %s", site, message)
        telemetry.record_failure(
            site, message, login_failed=isinstance(exc, LoginFailed), ledger=ledger_view(store, site)
        )
        return None
    findings = checks.run(snap, policy).findings
    telemetry.record(snap, findings, ledger_view(store, site), policy.maintenance_lease_pattern)
    return snap
