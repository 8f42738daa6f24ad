"""What the exporter knows: per site, the latest snapshot and what its cycle learnt, plus the API call metrics.

The collection loop writes here once per cycle; collectors only read, at scrape time. A scrape
never calls OpenStack, so it costs the same whether Keystone is up or down, and the data it
shows is exactly one snapshot's, with its age.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram, disable_created_metrics

from hammersmith.cloud.connection import RequestObserver
from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy, Site
from hammersmith.detect.checks import Finding
from hammersmith.detect.probes import ProbeResult
from hammersmith.detect.smoke import ScenarioResult, SmokeRun
from hammersmith.store import Store
from hammersmith.store.pauses import OpenMaintenance

# `_created` series double every counter's output for a value Prometheus can infer from resets
disable_created_metrics()

#: from a 5 ms cached read to a 60 s timeout
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: the states whose *arrival* counts as a failed launch, by service
IRONIC_LAUNCH_FAILED = "deploy failed"
NOVA_LAUNCH_FAILED = "ERROR"
MAINTENANCE_LEASE_PATTERN: str = Policy.model_fields["maintenance_lease_pattern"].default


@dataclass(frozen=True)
class LedgerView:
    """The store's durable facts about a site's hammers, read once per cycle (not per scrape)."""

    actions: dict[tuple[str, str], int] = field(default_factory=dict)
    #: hammer -> (verified fixes, total seconds from action to verified fix)
    mttr: dict[str, tuple[int, float]] = field(default_factory=dict)
    breaker_open: bool = False
    last_sweep_ok: datetime | None = None
    #: hammers paused at the site now ("*": every hammer), each once however many pauses cover it
    paused: tuple[str, ...] = ()
    #: maintenances not yet over, for their `until` (MaintenanceOverdue)
    maintenances: tuple[OpenMaintenance, ...] = ()

    @classmethod
    def read(cls, store: Store, site: str) -> LedgerView:
        breaker = store.breaker(site)
        sweep = store.last_sweep(site)
        return cls(
            actions=store.action_counts(site),
            mttr=store.mttr(site),
            breaker_open=bool(breaker and breaker.is_open),
            last_sweep_ok=sweep.finished_at if sweep else None,
            paused=tuple(sorted({p.hammer for p in store.pauses(site)})),
            maintenances=tuple(store.maintenance_holds(site)),
        )


@dataclass(frozen=True)
class SiteView:
    """One site as of its last cycle; replaced whole on each cycle, so a scrape never sees half an update."""

    site: str
    snapshot: Snapshot | None = None
    findings: tuple[Finding, ...] = ()
    ledger: LedgerView = field(default_factory=LedgerView)
    #: cycle results: ok / incomplete / failed
    cycles: Counter[str] = field(default_factory=Counter)
    last_result: str | None = None
    last_error: str | None = None
    login_ok: bool | None = None
    #: (service, project) -> launches that failed since the agent started
    launch_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: what was already failed in the previous snapshot, so only arrivals count (None until the first one)
    failed_before: frozenset[tuple[str, str]] | None = None
    #: ("blazar", project) -> leases whose start failed since the agent started; and the leases failed before
    lease_start_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    lease_failed_before: frozenset[tuple[str, str]] | None = None
    #: project ID -> name, as Keystone last listed it: a deleted project keeps its name, so its series keep theirs
    project_names: dict[str, str] = field(default_factory=dict)
    #: the site's `policy.maintenance_lease_pattern`: which Blazar leases are operators' maintenance
    maintenance_lease_pattern: str = MAINTENANCE_LEASE_PATTERN
    #: probe name -> its latest result (probes run on their own schedule, not the cycle's)
    probes: dict[str, ProbeResult] = field(default_factory=dict)
    #: (set, scenario) -> its latest result
    smoke: dict[tuple[str, str], ScenarioResult] = field(default_factory=dict)


def project_of(item: dict[str, Any], service: str) -> str:
    """The project a failed launch belongs to: Nova's tenant, or the node's instance project, lessee or owner."""
    if service == "nova":
        return item.get("tenant_id") or item.get("project_id") or "unknown"
    info = item.get("instance_info") or {}
    return info.get("project_id") or item.get("lessee") or item.get("owner") or "unknown"


def failed_launches(snap: Snapshot) -> dict[tuple[str, str], str]:
    """(service, object id) -> project, for everything currently sitting in a failed-launch state."""
    failed = {
        ("ironic", n["uuid"]): project_of(n, "ironic")
        for n in snap.nodes
        if n["provision_state"] == IRONIC_LAUNCH_FAILED
    }
    for server in snap.data.get("servers") or []:
        if server.get("status") == NOVA_LAUNCH_FAILED:
            failed[("nova", server["id"])] = project_of(server, "nova")
    return failed


def failed_lease_starts(snap: Snapshot) -> dict[tuple[str, str], str]:
    """("blazar", lease id) -> project, for every lease whose `start_lease` event Blazar marked ERROR.

    The event, not the lease's status: a lease whose start failed is ERROR only until an operator
    updates or ends it, and one Blazar gave up retrying (its start kept finding the lease busy) may not be.
    """
    return {
        ("blazar", lease["id"]): lease.get("project_id") or "unknown"
        for lease in snap.data.get("leases") or []
        if any(e.get("event_type") == "start_lease" and e.get("status") == "ERROR" for e in lease.get("events") or [])
    }


def count_arrivals(
    counts: Counter[tuple[str, str]],
    before: frozenset[tuple[str, str]] | None,
    failed: dict[tuple[str, str], str],
    snap: Snapshot,
) -> tuple[Counter[tuple[str, str]], frozenset[tuple[str, str]]]:
    """`counts` ((service, project) -> failures) plus those in `failed` ((service, object id) -> project) that
    were not failed `before`, and what counts as failed before next time.

    A counter exists (at 0) once its service has been read with a failure in it; nothing counts before the
    first snapshot (the baseline), and a service read only partly keeps its previous failures: they must not
    count as new next time.
    """
    counts = Counter(counts)
    for (service, _), project in failed.items():
        if snap.complete(service):
            counts[(service, project)] += 0
    if before is not None:
        for key, project in failed.items():
            if key not in before and snap.complete(key[0]):
                counts[(key[0], project)] += 1
    return counts, frozenset(failed) | frozenset(k for k in before or () if not snap.complete(k[0]))


Schedule = dict[tuple[str, str], float]
"""(job, set) -> seconds between runs (0: never scheduled); set is "" but for smoke"""


def schedule(site: Site, *, agent: bool) -> Schedule:
    """The intervals of a site's periodic jobs; only the agent (`hammersmith run`) runs probes and smoke."""
    jobs: Schedule = {("cycle", ""): float(site.sweep_interval_seconds)}
    if agent:
        jobs[("probes", "")] = float(site.probes.interval_seconds)
        jobs[("smoke", "cheap")] = float(site.smoke.cheap_interval_seconds)
        jobs[("smoke", "expensive")] = float(site.smoke.expensive_interval_seconds)
    return jobs


class Telemetry:
    """Every site's latest view, and the live counters of the agent's own API calls."""

    def __init__(self, sites: list[str], schedules: dict[str, Schedule] | None = None) -> None:
        self._lock = threading.Lock()
        #: per site, what runs how often: exported, so alert rules follow the config instead of guessing it
        self.schedules = schedules or {}
        self._views = {name: SiteView(name) for name in sites}
        #: bumped per topic ("cycle", "probes", "smoke") on every update of any site: a collector's cached text
        #: stays valid while the generation of the topic it reads is unchanged
        self.generations: Counter[str] = Counter()
        #: called (in the cycle's thread) after each update, e.g. to re-render the exporter's cache there
        self.listeners: list[Callable[[], None]] = []
        self.api_requests = PromCounter(
            "hammersmith_api_requests",
            "HTTP requests the agent made to OpenStack, by HTTP status (or timeout/connection).",
            ["site", "service", "code"],
            registry=None,
        )
        self.api_errors = PromCounter(
            "hammersmith_api_request_errors",
            "Requests that failed: timeouts, refused connections and 5xx answers.",
            ["site", "service"],
            registry=None,
        )
        self.api_latency = Histogram(
            "hammersmith_api_request_duration_seconds",
            "Latency of the agent's own OpenStack requests.",
            ["site", "service"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )

    def observer(self, site: str) -> RequestObserver:
        """The callback a SiteConnection calls after each request."""

        def observe(service: str, code: str, seconds: float) -> None:
            self.api_requests.labels(site, service, code).inc()
            if not code.isdigit() or code.startswith("5"):
                self.api_errors.labels(site, service).inc()
            self.api_latency.labels(site, service).observe(seconds)

        return observe

    def views(self) -> dict[str, SiteView]:
        with self._lock:
            return dict(self._views)

    def record(
        self,
        snap: Snapshot,
        findings: list[Finding],
        ledger: LedgerView | None,
        maintenance_lease_pattern: str = MAINTENANCE_LEASE_PATTERN,
    ) -> None:
        """A cycle read the site: keep its snapshot, count newly failed launches and lease starts."""
        result = "incomplete" if snap.incomplete else "ok"
        with self._lock:
            view = self._views[snap.site]
            launches, failed_before = count_arrivals(
                view.launch_failures, view.failed_before, failed_launches(snap), snap
            )
            lease_starts, lease_failed_before = count_arrivals(
                view.lease_start_failures, view.lease_failed_before, failed_lease_starts(snap), snap
            )
            self._views[snap.site] = replace(
                view,
                snapshot=snap,
                findings=tuple(findings),
                ledger=ledger or view.ledger,
                cycles=view.cycles + Counter({result: 1}),
                last_result=result,
                last_error="; ".join(f"{s}: {snap.services[s].error}" for s in snap.incomplete) or None,
                login_ok=True,
                launch_failures=launches,
                failed_before=failed_before,
                lease_start_failures=lease_starts,
                lease_failed_before=lease_failed_before,
                project_names={**view.project_names, **snap.project_names},
                maintenance_lease_pattern=maintenance_lease_pattern,
            )
            self.generations["cycle"] += 1
        self._notify()

    def record_failure(self, site: str, error: str, *, login_failed: bool, ledger: LedgerView | None = None) -> None:
        """A cycle could not read the site at all: the last snapshot stays, and grows older."""
        with self._lock:
            view = self._views[site]
            self._views[site] = replace(
                view,
                cycles=view.cycles + Counter({"failed": 1}),
                last_result="failed",
                last_error=error,
                login_ok=False if login_failed else view.login_ok,
                ledger=ledger or view.ledger,
            )
            self.generations["cycle"] += 1
        self._notify()

    def record_probes(self, site: str, results: list[ProbeResult]) -> None:
        """A probe run finished: its results replace those of the same probes."""
        with self._lock:
            view = self._views[site]
            self._views[site] = replace(view, probes={**view.probes, **{r.probe: r for r in results}})
            self.generations["probes"] += 1
        self._notify()

    def record_smoke(self, site: str, run: SmokeRun) -> None:
        """A smoke run finished: its scenarios' results replace those of the same set and scenario."""
        with self._lock:
            view = self._views[site]
            latest = {(run.set, r.scenario): r for r in run.results}
            self._views[site] = replace(view, smoke={**view.smoke, **latest})
            self.generations["smoke"] += 1
        self._notify()

    def _notify(self) -> None:
        for listener in self.listeners:
            listener()
