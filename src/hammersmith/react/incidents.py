"""Alertmanager alerts -> incidents -> the mapped hammer, through the sweep's own safety layer and ledger.

A delivery is stored before the webhook answers and processed here after, by one worker thread: the
request never waits for OpenStack, and a delivery left unprocessed by a stopped agent is processed at
the next start. Each alert is an incident keyed by (fingerprint, startsAt); the database's unique key
decides who opens it, and only the opener acts, so duplicate deliveries never act twice.
"""

from __future__ import annotations

import heapq
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, ValidationError, field_validator

from hammersmith.config import Settings
from hammersmith.react import hammers as registry
from hammersmith.react.sweep import Sweeper
from hammersmith.store import Store
from hammersmith.store.models import IncidentRow

log = logging.getLogger("hammersmith.incidents")


def _storable(value: str) -> str:
    """A lone surrogate (JSON "\\ud800") is valid JSON but no UTF-8 store can hold it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not encodable as UTF-8 (a lone surrogate)") from None
    return value


def _in_utc_range(value: datetime) -> datetime:
    """Stored in UTC: 0001-01-01T00:00:00+01:00 is a valid RFC 3339 time that UTC cannot hold."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]
Time = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]


class Alert(BaseModel):
    """One alert of Alertmanager's webhook payload (version 4); unknown fields are dropped, never stored."""

    status: Literal["firing", "resolved"]
    labels: dict[Text, Text]
    annotations: dict[Text, Text] = Field(default_factory=dict)
    startsAt: Time  # noqa: N815 - Alertmanager's field names
    endsAt: Time | None = None  # noqa: N815 - Alertmanager sends 0001-01-01T00:00:00Z while firing
    generatorURL: Text = ""  # noqa: N815
    fingerprint: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")  # Alertmanager's are 16 hex digits

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("labels must include a non-empty 'alertname'")
        return labels


class Envelope(BaseModel):
    """Alertmanager's webhook body, version 4, with its alerts still unchecked: each is validated on its own,
    so one bad alert is set aside instead of refusing the others
    (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

    version: Literal["4"]
    groupKey: Text  # noqa: N815
    truncatedAlerts: int = Field(0, ge=0, le=2**63)  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: Text
    groupLabels: dict[Text, Text] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[Text, Text] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[Text, Text] = Field(default_factory=dict)  # noqa: N815
    externalURL: Text = ""  # noqa: N815
    alerts: list[Any]


class Payload(Envelope):
    """A delivery as stored: the envelope and only the alerts that passed the schema."""

    alerts: list[Alert]  # type: ignore[assignment]


def escaped(value: object) -> str:
    """ASCII-only text for anything a client sent (lone surrogates, NUL and all): safe in any column or log."""
    return json.dumps(str(value))[1:-1]


def schema_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Each problem with its field path (e.g. alerts.0.startsAt); the offending input is not echoed back."""
    return [
        {
            "field": escaped(".".join([prefix, *(str(p) for p in error["loc"])] if prefix else map(str, error["loc"])))
            or "(body)",
            "problem": escaped(error["msg"]),
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]


@dataclass
class Checked:
    """A delivery split by the schema: the body to store (accepted alerts only) and the alerts set aside."""

    body: dict[str, Any]
    accepted: int
    set_aside: list[dict[str, Any]]


def check(envelope: Envelope, limit: int, keep_chars: int = 65_536) -> Checked:
    """Validate each alert on its own; keep at most `limit`. A set-aside alert is kept as ASCII-escaped JSON text
    (never the raw value that could break the store), with the fields at fault."""
    accepted: list[Alert] = []
    set_aside: list[dict[str, Any]] = []
    for index, raw in enumerate(envelope.alerts):
        if index >= limit:
            errors = [{"field": f"alerts.{index}", "problem": f"beyond http.max_alerts_per_delivery ({limit})"}]
        else:
            try:
                accepted.append(Alert.model_validate(raw))
                continue
            except ValidationError as exc:
                errors = schema_errors(exc, f"alerts.{index}")
        text = json.dumps(raw, ensure_ascii=True, default=str)
        if len(text) > keep_chars:
            text = text[:keep_chars] + "...(cut)"
        set_aside.append({"index": index, "errors": errors, "alert": text})
    body = envelope.model_dump(mode="json", exclude={"alerts"})
    body["alerts"] = [a.model_dump(mode="json") for a in accepted]
    return Checked(body, len(accepted), set_aside)


class Stats:
    """What /metrics shows about the webhook: requests by HTTP code, firing incidents by (site, alertname).

    Labels come from alerts, so anyone with the token could mint series: a site not configured counts under
    site="other", and alert names beyond the first `http.max_alert_series` seen firing under alertname="other"
    (for the agent's lifetime, so the set of series stays bounded, not just each scrape)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[int] = Counter()
        self.open: dict[tuple[str, str], int] = {}
        self.series: set[str] = set()

    def request(self, code: int) -> None:
        with self.lock:
            self.requests[code] += 1

    def set_open(self, counts: dict[tuple[str, str], int], sites: Collection[str], max_series: int) -> None:
        folded: Counter[tuple[str, str]] = Counter()
        with self.lock:
            for (site, name), count in sorted(counts.items()):
                if name not in self.series and len(self.series) < max_series:
                    self.series.add(name)
                folded[(site if site in sites else "other", name if name in self.series else "other")] += count
            self.open = dict(folded)


STATS = Stats()


class Unusable(Exception):
    """A stored delivery no retry can fix: dead-lettered at once."""


#: timeline kinds that record what was done about a firing incident
DECISIONS = ("action", "no_action", "error")


def _column(value: str, width: int) -> str:
    return value.replace("\x00", "")[:width]


def _subject_label(hammer: str | None) -> str:
    """The label naming what the mapped hammer acts on: `node` for Ironic's hammers, e.g. `instance` for a replica."""
    found = registry.load().get(hammer) if hammer else None
    return found.alert_label if found else "node"


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

    def process_delivery(
        self, delivery_id: int, recovering: bool = False, done: set[int] | None = None, last_try: bool = False
    ) -> None:
        """Handle every alert of a stored delivery, then mark it processed; a store error raises (the worker retries).

        `recovering`: left by a stopped agent, or tried before. `done` collects the alerts handled, so a retry
        skips them. A try stops at the first failing alert (a locked store fails them all, each after the busy
        timeout), except the `last_try`, which tries every alert left so one that keeps failing costs only itself.
        """
        body = self.store.delivery(delivery_id)
        try:
            alerts = Payload.model_validate(body).alerts if body is not None else []
        except ValidationError as exc:  # stored under another schema: kept for a human, never retried
            raise Unusable(f"no longer matches the schema: {schema_errors(exc)}") from None
        done = set() if done is None else done
        failed: Exception | None = None
        for index, alert in enumerate(alerts):
            if index in done:
                continue
            try:
                self.handle(alert, recovering)
            except Exception as exc:
                if not last_try:
                    raise
                log.error("webhook delivery %s: alert %d failed on its last try: %s", delivery_id, index, exc)
                failed = failed or exc
                continue
            done.add(index)
        if failed is not None:
            raise failed
        self.store.mark_processed(delivery_id)
        self.refresh_stats()

    def refresh_stats(self) -> None:
        """Firing incidents for /metrics; a failure here costs a stale gauge, never a retried delivery."""
        try:
            counts = self.store.open_incident_counts()
        except Exception as exc:
            log.warning("could not count open incidents for /metrics: %s", exc)
            return
        STATS.set_open(counts, self.settings.sites, self.settings.http.max_alert_series)

    def handle(self, alert: Alert, recovering: bool = False) -> dict[str, Any]:
        """One alert: open, duplicate or resolve its incident; the opener of a firing one acts.

        `recovering` (a delivery a stopped agent left unprocessed, or one whose last try failed): an
        incident opened but never decided on is decided now -- if the ledger row is linked, it acted
        already and only the timeline is written; otherwise the safety layer's re-check refuses
        whatever may already have been done.

        Returns {"incident": id, "event": the timeline kind that decided it, "detail": ...} for tests.
        """
        # a label is anyone's text: cut to the columns' widths, without NUL (PostgreSQL refuses both)
        name = _column(alert.labels["alertname"], 255)
        site = _column(alert.labels.get("site") or self.site_name, 64)
        hammer = self.settings.sites[site].alerts.get(name) if site in self.settings.sites else None
        label = alert.labels.get(_subject_label(hammer)) or None  # acted on as sent (act_on checks it), stored cut
        node = (_column(label, 255) or None) if label else None
        runbook = _column(
            alert.annotations.get("runbook_url") or f"{self.settings.http.base_url}/runbooks/{quote(name, safe='')}",
            2048,
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
        if not opened:
            row = self._undecided(incident) if recovering else None
            if row is None:
                self.store.add_incident_event(incident, "duplicate", "delivered again")
                return {"incident": incident, "event": "duplicate", "detail": "delivered again"}
            if row.action_id is not None:  # acted, then the store failed before the timeline said so
                why = f"acted before a failed try (ledger #{row.action_id}); not acted again"
                self.store.add_incident_event(incident, "action", why)
                return {"incident": incident, "event": "action", "detail": why}
        try:
            kind, why = self._act(site, name, hammer, label, incident)
        except Exception as exc:  # an OpenStack or database error ends this alert, never the worker
            log.exception("incident %s: acting on %s failed", incident, name)
            kind, why = "error", f"{type(exc).__name__}: {exc}"[:500]
        self.store.add_incident_event(incident, kind, why)
        return {"incident": incident, "event": kind, "detail": why}

    def _undecided(self, incident: int) -> IncidentRow | None:
        """The incident if it is firing with nothing decided on it yet (its opener stopped or failed in between)."""
        row = self.store.incident(incident)
        if row is None or row.status != "firing" or any(e.kind in DECISIONS for e in row.events):
            return None
        return row

    def _act(self, site: str, name: str, hammer: str | None, node: str | None, incident: int) -> tuple[str, str]:
        """("action", what the ledger says) or ("no_action", why not)."""
        if site != self.site_name:
            return "no_action", f"site {site!r} is not served by this agent (it serves {self.site_name!r})"
        if hammer is None:
            return "no_action", f"no hammer mapped to {name} (sites.{site}.alerts)"
        if node is None:
            label = _subject_label(hammer)
            return "no_action", f"{name} has no {label} label: {hammer} needs one to find what it acts on"
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
    """One thread processing stored deliveries in order; started with whatever a stopped agent left unprocessed.

    A delivery whose processing fails (a store error) is tried again after 1, 2, 4 ... s (at most
    http.retry_max_seconds), up to http.delivery_attempts tries, then dead-lettered with its error
    (`hammersmith incidents --dead`). A retry acts at most once per incident: see `recovering` in handle().
    """

    def __init__(self, processor: IncidentProcessor) -> None:
        self.processor = processor
        self.queue: queue.Queue[int | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="incidents", daemon=True)
        self._stopping = threading.Event()
        self.backlog: set[int] = set()
        self._retries: list[tuple[float, int]] = []  # (monotonic time due, delivery id), a heap
        self._tries: dict[int, int] = {}
        self._done: dict[int, set[int]] = {}

    def submit(self, delivery_id: int) -> None:
        self.queue.put(delivery_id)

    def start(self) -> IncidentWorker:
        self.backlog = set(self.processor.store.unprocessed_deliveries())
        if self.backlog:
            log.info("processing %d webhook deliveries left unprocessed", len(self.backlog))
        for delivery_id in sorted(self.backlog):
            self.queue.put(delivery_id)
        self.processor.refresh_stats()
        self.thread.start()
        return self

    def stop(self) -> None:
        """Finish the delivery at hand; the rest (and those waiting for a retry) stay stored for the next start."""
        self._stopping.set()
        self.queue.put(None)
        self.thread.join(timeout=60)
        self.processor.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._retries and self._retries[0][0] <= time.monotonic():
                self._attempt(heapq.heappop(self._retries)[1])
                continue
            timeout = max(0.0, self._retries[0][0] - time.monotonic()) if self._retries else None
            try:
                delivery_id = self.queue.get(timeout=timeout)
            except queue.Empty:
                continue
            try:
                if delivery_id is None or self._stopping.is_set():
                    return
                self._attempt(delivery_id)
            finally:
                self.queue.task_done()

    def _attempt(self, delivery_id: int) -> None:
        """One try of a delivery: processed, scheduled again with backoff, or dead-lettered."""
        store, http = self.processor.store, self.processor.settings.http
        if delivery_id not in self._tries:
            self._tries[delivery_id] = 0
            if delivery_id in self.backlog:  # tries before a restart count; a new delivery has none
                try:
                    self._tries[delivery_id] = store.delivery_attempts(delivery_id)
                except Exception:
                    pass
        tries = self._tries[delivery_id]
        recovering = delivery_id in self.backlog or tries > 0
        try:
            self.processor.process_delivery(
                delivery_id,
                recovering=recovering,
                done=self._done.setdefault(delivery_id, set()),
                last_try=tries + 1 >= http.delivery_attempts,
            )
        except Exception as exc:
            tries = self._tries[delivery_id] = tries + 1
            dead = isinstance(exc, Unusable) or tries >= http.delivery_attempts
            # the first line only: SQLAlchemy's next ones hold the statement and its parameters (alert data)
            error = escaped(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")[:1000]
            try:
                store.delivery_failed(delivery_id, error, dead)
            except Exception as record:  # the store is down: the delivery stays unprocessed for the next start
                log.warning("webhook delivery %s: could not record its failure: %s", delivery_id, record)
            if dead:
                log.error("webhook delivery %s dead-lettered after %d tries: %s", delivery_id, tries, error)
                self._forget(delivery_id)
                return
            delay = min(2.0 ** (tries - 1), http.retry_max_seconds)
            log.warning("webhook delivery %s failed (try %d), retrying in %g s: %s", delivery_id, tries, delay, error)
            heapq.heappush(self._retries, (time.monotonic() + delay, delivery_id))
        else:
            self._forget(delivery_id)

    def _forget(self, delivery_id: int) -> None:
        self._tries.pop(delivery_id, None)
        self._done.pop(delivery_id, None)


@contextmanager
def running(settings: Settings, site_name: str, store: Store) -> Iterator[IncidentWorker]:
    """The agent's incident worker, started (with any backlog) and stopped around a block."""
    worker = IncidentWorker(IncidentProcessor(settings, site_name, store)).start()
    try:
        yield worker
    finally:
        worker.stop()
