"""Part-time sites: whether a site is offline by schedule, so the staleness and service alerts know the window.

The telemetry holds what a cycle read, not the config; the schedules reach this collector through `watch`,
called for each site when the agent (`run`) or the exporter starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric

from hammersmith.config import Site
from hammersmith.errors import HammersmithError
from hammersmith.quantify.collectors import Collector, collector

log = logging.getLogger("hammersmith.windows")

_watched: dict[str, Site] = {}
_lock = threading.Lock()


def watch(name: str, site: Site) -> None:
    """Export the schedule state of `site` from now on (a site without schedules is exported as never offline)."""
    with _lock:
        _watched[name] = site


@collector
class ScheduleCollector(Collector):
    name = "schedule"
    dynamic = True  # a window begins and ends between cycles

    def collect(self) -> Iterable[Metric]:
        from hammersmith.maintenance.windows import state

        offline = GaugeMetricFamily(
            "hammersmith_site_scheduled_offline",
            "1 while a schedule covering the whole site has it offline (a part-time site's window), else 0.",
            labels=["site"],
        )
        change = GaugeMetricFamily(
            "hammersmith_site_schedule_next_change_timestamp_seconds",
            "When the site next goes offline or comes back by schedule (Unix time); absent: not within a year.",
            labels=["site"],
        )
        with _lock:
            sites = sorted(_watched.items())
        now = datetime.now(UTC)
        for name, site in sites:
            try:
                current = state(site, now)
            except HammersmithError as exc:  # an unreadable calendar: no series, rather than a wrong one
                log.warning("site %s: schedule state unknown: %s", name, exc)
                continue
            offline.add_metric([name], 1 if current.offline else 0)
            if current.next_change is not None:
                change.add_metric([name], current.next_change.timestamp())
        yield from (offline, change)
