"""The read-only cycle for one site: snapshot -> checks, recorded in the store.

`hammersmith snapshot`, `check` and the demo's report use it; the acting cycle (plan ->
guarded apply -> ledger) is `hammersmith.react.sweep.Sweeper.sweep`, which reads top to bottom
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from hammersmith.cloud import snapshot as snapshot_mod
from hammersmith.cloud.connection import SiteConnection
from hammersmith.config import Settings
from hammersmith.detect import checks
from hammersmith.store import open_store


@dataclass
class Cycle:
    snapshot: snapshot_mod.Snapshot
    report: checks.Report


def take_snapshot(settings: Settings, site_name: str) -> snapshot_mod.Snapshot:
    """Read the site and record the read; the store is opened first so a bad store fails fast."""
    store = open_store(settings.effective_store_url, settings.state_dir)
    try:
        site = SiteConnection(site_name, settings.sites[site_name])
        try:
            snap = snapshot_mod.take(site)
        finally:
            site.close()
        summary = snap.summary()
        store.record_snapshot(
            site=snap.site,
            started_at=snap.started_at,
            finished_at=snap.finished_at,
            duration_seconds=snap.duration,
            complete=not snap.incomplete,
            incomplete_services=snap.incomplete,
            requests=snap.requests,
            counts={**summary["counts"], **summary["nodes"]},
        )
    finally:
        store.close()
    return snap


def run(settings: Settings, site_name: str) -> Cycle:
    """Snapshot, then every check over it (read-only for now)."""
    snap = take_snapshot(settings, site_name)
    return Cycle(snap, checks.run(snap, settings.sites[site_name].policy))
