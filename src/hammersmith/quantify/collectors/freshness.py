"""Freshness: how old each site's snapshot is, how long it took, whether it was complete, what was reachable.

This is what Chameleon's exporter lacked: without it a stuck exporter looks like a healthy cloud.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector

CYCLE_RESULTS = ("ok", "incomplete", "failed")


@collector
class FreshnessCollector(Collector):
    name = "freshness"
    dynamic = True  # the age grows between cycles

    def collect(self) -> Iterable[Metric]:
        labels = ["site"]
        timestamp = GaugeMetricFamily(
            "hammersmith_snapshot_timestamp_seconds", "When the latest snapshot started (Unix time).", labels=labels
        )
        age = GaugeMetricFamily(
            "hammersmith_snapshot_age_seconds", "Seconds since the latest snapshot finished.", labels=labels
        )
        duration = GaugeMetricFamily(
            "hammersmith_snapshot_duration_seconds", "How long the latest snapshot took.", labels=labels
        )
        complete = GaugeMetricFamily(
            "hammersmith_snapshot_complete",
            "1 when every service of the latest snapshot was read in full.",
            labels=labels,
        )
        service_seconds = GaugeMetricFamily(
            "hammersmith_snapshot_service_duration_seconds",
            "How long the latest snapshot took to read each service (its slowest listing).",
            labels=["site", "service"],
        )
        requests = GaugeMetricFamily(
            "hammersmith_snapshot_requests",
            "HTTP requests the latest snapshot made, per service (constant but for pages; keystone: login, projects).",
            labels=["site", "service"],
        )
        up = GaugeMetricFamily(
            "hammersmith_service_up",
            "1 when the last cycle could read the service (keystone: log in and list projects), else 0.",
            labels=["site", "service"],
        )
        cycles = CounterMetricFamily(
            "hammersmith_cycles", "Collection cycles by result (ok, incomplete, failed).", labels=["site", "result"]
        )
        schedule = GaugeMetricFamily(
            "hammersmith_schedule_interval_seconds",
            "Seconds between runs of the site's periodic jobs (cycle, probes, smoke sets), from the config; 0: never.",
            # not `job`: Prometheus sets `job` on every scraped series and would rename ours `exported_job`
            labels=["site", "schedule", "set"],
        )
        for site, jobs in sorted(self.telemetry.schedules.items()):
            for (job, smoke_set), seconds in sorted(jobs.items()):
                schedule.add_metric([site, job, smoke_set], seconds)
        now = datetime.now(UTC)
        for site, view in self.views():
            for result in CYCLE_RESULTS:
                cycles.add_metric([site, result], view.cycles.get(result, 0))
            snap = view.snapshot
            failed = view.last_result == "failed"
            if view.login_ok is not None and (view.login_ok is False or (snap and snap.requests.get("keystone"))):
                # one series for keystone: the login worked and, if it was read, the projects were listed
                listed = snap is None or "keystone" not in snap.incomplete
                up.add_metric([site, "keystone"], 1 if view.login_ok and listed else 0)
            if snap is None:
                continue
            timestamp.add_metric([site], snap.started_at.timestamp())
            age.add_metric([site], (now - snap.finished_at).total_seconds())
            duration.add_metric([site], snap.duration)
            complete.add_metric([site], 0 if snap.incomplete else 1)
            for service, read in sorted(snap.services.items()):
                if read.status == "absent":
                    continue
                service_seconds.add_metric([site, service], read.seconds)
                if service != "keystone":  # its series is the login's, above
                    up.add_metric([site, service], 0 if failed or read.status != "ok" else 1)
            for service, count in sorted(snap.requests.items()):
                requests.add_metric([site, service], count)
        yield from (timestamp, age, duration, complete, service_seconds, requests, up, cycles, schedule)
