"""Alertmanager alerts -> incidents -> the mapped hammer, through the sweep's own safety layer and ledger.

A delivery is stored before the webhook answers and processed here after, by one worker thread: the
request never waits for OpenStack, and a delivery left unprocessed by a stopped agent is processed at
the next start. Each alert is an incident keyed by (fingerprint, startsAt); the database's unique key
decides who opens it, and only the opener acts, so duplicate deliveries never act twice.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, ValidationError, field_validator

from hammersmith.config import Settings
from hammersmith.react.sweep import Sweeper
from hammersmith.store import Store

log = logging.getLogger("hammersmith.incidents")


class Alert(BaseModel):
    """One alert of Alertmanager's webhook payload (version 4)."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime  # noqa: N815 - Alertmanager's field names
    endsAt: AwareDatetime | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")  # Alertmanager's are 16 hex digits

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("labels must include a non-empty 'alertname'")
        return labels


class Payload(BaseModel):
    """Alertmanager's webhook body, version 4 (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

    version: Literal["4"]
    groupKey: str  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815
    alerts: list[Alert]


class Stats:
    """What /metrics shows about the webhook: requests by HTTP code, firing incidents by (site, alertname)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[int] = Counter()
        self.open: dict[tuple[str, str], int] = {}

    def request(self, code: int) -> None:
        with self.lock:
            self.requests[code] += 1


STATS = Stats()
#: timeline kinds that record what was done about a firing incident
DECISIONS = ("action", "no_action", "error")


def _column(value: str, width: int) -> str:
    return value.replace("\x00", "")[:width]


class IncidentProcessor:
    """Turns one site's alerts into incidents and acts for the ones that open a new incident."""

    def __init__(self, settings: Settings, site_name: str, store: Store) -> None:
        self.settings = settings
        self.site_name = site_name
        self.site = settings.sites[site_name]
        self.store = store
        self._sweeper: Sweeper | None = None
        self._act_lock = threading.Lock()  # one Sweeper (one OpenStack session), one action at a time

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.close()

    def process_delivery(self, delivery_id: int, recovering: bool = False) -> None:
        """Handle every alert of a stored delivery, then mark it processed (`recovering`: left by a stopped agent)."""
        body = self.store.delivery(delivery_id)
        try:
            alerts = Payload.model_validate(body).alerts if body is not None else []
        except ValidationError as exc:  # stored under another schema: kept for a human, never retried forever
            log.error("webhook delivery %s no longer matches the schema, set aside: %s", delivery_id, exc)
            alerts = []
        for alert in alerts:
            self.handle(alert, recovering)
        self.store.mark_processed(delivery_id)
        STATS.open = self.store.open_incident_counts()

    def handle(self, alert: Alert, recovering: bool = False) -> dict[str, Any]:
        """One alert: open, duplicate or resolve its incident; the opener of a firing one acts.

        `recovering` (a delivery a stopped agent left unprocessed, handled before any new one): an
        incident it opened but never decided on is decided now -- the safety layer's re-check
        refuses whatever that agent may already have done.

        Returns {"incident": id, "event": the timeline kind that decided it, "detail": ...} for tests.
        """
        # a label is anyone's text: cut to the columns' widths, without NUL (PostgreSQL refuses both)
        name = _column(alert.labels["alertname"], 255)
        site = _column(alert.labels.get("site") or self.site_name, 64)
        node = _column(alert.labels.get("node") or "", 255) or None
        hammer = self.settings.sites[site].alerts.get(name) if site in self.settings.sites else None
        runbook = _column(
            alert.annotations.get("runbook_url") or f"{self.settings.http.base_url}/runbooks/{name}", 2048
        )
        detail = f"{alert.status} {name}" + (f" on {node}" if node else "") + f" (fingerprint {alert.fingerprint})"
        incident, opened = self.store.open_incident(
            site=site,
            alertname=name,
            fingerprint=alert.fingerprint,
            starts_at=alert.startsAt,
            status=alert.status,
            labels=alert.labels,
            annotations=alert.annotations,
            node=node,
            hammer=hammer,
            runbook_url=runbook,
            detail=detail,
        )
        if alert.status == "resolved":
            ends = alert.endsAt.isoformat() if alert.endsAt else "now"
            if opened:  # the firing delivery never reached us: the incident opens and closes at once
                self.store.add_incident_event(incident, "resolved", f"resolved at {ends}")
                return {"incident": incident, "event": "resolved", "detail": ends}
            if self.store.resolve_incident(incident, f"resolved at {ends}"):
                return {"incident": incident, "event": "resolved", "detail": ends}
            self.store.add_incident_event(incident, "duplicate", f"resolved again ({ends})")
            return {"incident": incident, "event": "duplicate", "detail": ends}
        if not opened and not (recovering and self._undecided(incident)):
            self.store.add_incident_event(incident, "duplicate", "delivered again")
            return {"incident": incident, "event": "duplicate", "detail": "delivered again"}
        try:
            kind, why = self._act(site, name, hammer, node, incident)
        except Exception as exc:  # an OpenStack or database error ends this alert, never the worker
            log.exception("incident %s: acting on %s failed", incident, name)
            kind, why = "error", f"{type(exc).__name__}: {exc}"[:500]
        self.store.add_incident_event(incident, kind, why)
        return {"incident": incident, "event": kind, "detail": why}

    def _undecided(self, incident: int) -> bool:
        row = self.store.incident(incident)
        return row is not None and row.status == "firing" and not any(e.kind in DECISIONS for e in row.events)

    def _act(self, site: str, name: str, hammer: str | None, node: str | None, incident: int) -> tuple[str, str]:
        """("action", what the ledger says) or ("no_action", why not)."""
        if site != self.site_name:
            return "no_action", f"site {site!r} is not served by this agent (it serves {self.site_name!r})"
        if hammer is None:
            return "no_action", f"no hammer mapped to {name} (sites.{site}.alerts)"
        if node is None:
            return "no_action", f"{name} has no node label: {hammer} needs a node"
        with self._act_lock:
            if self._sweeper is None:
                self._sweeper = Sweeper(self.settings, self.site_name, self.store, trigger="alertmanager")
            result = self._sweeper.act_on(hammer, node)
        if not result.actions:
            return "no_action", result.skipped.get("alert") or f"{hammer} planned nothing for {node}"
        parts = []
        for a in result.actions:
            if a.get("action_id") is not None:
                self.store.set_incident_action(incident, a["action_id"])
            parts.append(f"{a['hammer']} {a['kind']} {a['node']}: {a['outcome']} (ledger #{a.get('action_id')})")
            if a["reason"]:
                parts[-1] += f": {a['reason']}"
        if any(a["outcome"] not in ("refused",) for a in result.actions):
            return "action", "; ".join(parts)
        return "no_action", "refused by the safety layer: " + "; ".join(parts)


class IncidentWorker:
    """One thread processing stored deliveries in order; started with whatever a stopped agent left unprocessed."""

    def __init__(self, processor: IncidentProcessor) -> None:
        self.processor = processor
        self.queue: queue.Queue[int | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="incidents", daemon=True)
        self._stopping = threading.Event()
        self.backlog: set[int] = set()

    def submit(self, delivery_id: int) -> None:
        self.queue.put(delivery_id)

    def start(self) -> IncidentWorker:
        self.backlog = set(self.processor.store.unprocessed_deliveries())
        if self.backlog:
            log.info("processing %d webhook deliveries left unprocessed", len(self.backlog))
        for delivery_id in sorted(self.backlog):
            self.queue.put(delivery_id)
        STATS.open = self.processor.store.open_incident_counts()
        self.thread.start()
        return self

    def stop(self) -> None:
        """Finish the delivery at hand; the rest stay stored, unprocessed, for the next start."""
        self._stopping.set()
        self.queue.put(None)
        self.thread.join(timeout=60)
        self.processor.close()

    def _run(self) -> None:
        while True:
            delivery_id = self.queue.get()
            try:
                if delivery_id is None or self._stopping.is_set():
                    return
                self.processor.process_delivery(delivery_id, recovering=delivery_id in self.backlog)
            except Exception:  # left unprocessed: retried at the next start
                log.exception("webhook delivery %s could not be processed", delivery_id)
            finally:
                self.queue.task_done()


@contextmanager
def running(settings: Settings, site_name: str, store: Store) -> Iterator[IncidentWorker]:
    """The agent's incident worker, started (with any backlog) and stopped around a block."""
    worker = IncidentWorker(IncidentProcessor(settings, site_name, store)).start()
    try:
        yield worker
    finally:
        worker.stop()
