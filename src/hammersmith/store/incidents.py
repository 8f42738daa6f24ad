"""Incidents from Alertmanager: the deliveries as received, one incident per (fingerprint, startsAt), its timeline.

Who opens an incident is decided by the unique key in the database, never by reading first: of three agents
or threads handed the same alert at once, exactly one gets `opened=True`, and only that one may act on it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hammersmith.store.ledger import _now
from hammersmith.store.models import Base, DeliveryRow, Incident, IncidentEvent, IncidentRow, WebhookDelivery

EVENT_KINDS = ("received", "duplicate", "resolved", "action", "no_action", "error")


class IncidentsMixin:
    """The incidents half of Store; Store provides the engine and the unit-of-work sessions."""

    engine: Engine
    session: Callable[[], AbstractContextManager[Session]]
    _add: Callable[[Base], int]

    # -- deliveries ------------------------------------------------------------------------

    def record_delivery(
        self, body: dict[str, Any], now: datetime | None = None, set_aside: list[dict[str, Any]] | None = None
    ) -> int:
        """Store a webhook body before it is answered, so a crash while processing loses nothing."""
        row = WebhookDelivery(
            received_at=_now(now), body=body, processed_at=None, attempts=0, set_aside=set_aside or None
        )
        return self._add(row)

    def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        with self.session() as session:
            row = session.get(WebhookDelivery, delivery_id)
            return None if row is None else dict(row.body)

    def unprocessed_deliveries(self) -> list[int]:
        """Ids of deliveries accepted but neither processed nor dead-lettered, oldest first."""
        query = (
            select(WebhookDelivery.id)
            .where(WebhookDelivery.processed_at.is_(None), WebhookDelivery.dead_at.is_(None))
            .order_by(WebhookDelivery.id)
        )
        with self.session() as session:
            return list(session.scalars(query))

    def delivery_attempts(self, delivery_id: int) -> int:
        with self.session() as session:
            return session.scalar(select(WebhookDelivery.attempts).where(WebhookDelivery.id == delivery_id)) or 0

    def delivery_failed(self, delivery_id: int, error: str, dead: bool, now: datetime | None = None) -> None:
        """Count a failed try and keep its error; `dead`: no more tries, it waits for a human (incidents --dead)."""
        values: dict[str, Any] = {"attempts": WebhookDelivery.attempts + 1, "last_error": error}
        if dead:
            values["dead_at"] = _now(now)
        with self.engine.begin() as connection:
            connection.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))

    def dead_deliveries(self, limit: int = 200) -> list[DeliveryRow]:
        """Deliveries that need a human, newest first: dead-lettered, or holding alerts the schema set aside."""
        query = (
            select(WebhookDelivery)
            .where(or_(WebhookDelivery.dead_at.is_not(None), WebhookDelivery.set_aside.is_not(None)))
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
        with self.session() as session:
            return [DeliveryRow.of(row) for row in session.scalars(query)]

    def mark_processed(self, delivery_id: int, now: datetime | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(processed_at=_now(now))
            )

    # -- incidents -------------------------------------------------------------------------

    def open_incident(
        self,
        *,
        site: str,
        alertname: str,
        fingerprint: str,
        starts_at: datetime,
        status: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        node: str | None,
        hammer: str | None,
        runbook_url: str | None,
        detail: str,
        now: datetime | None = None,
    ) -> tuple[int, bool]:
        """(id, True) for the caller that created the incident (with its `received` event), else (id, False)."""
        now = _now(now)
        row = Incident(
            site=site,
            alertname=alertname,
            fingerprint=fingerprint,
            starts_at=starts_at,
            status=status,
            labels=dict(labels),
            annotations=dict(annotations),
            node=node,
            hammer=hammer,
            runbook_url=runbook_url,
            opened_at=now,
            resolved_at=now if status == "resolved" else None,
            action_id=None,
        )
        try:
            with self.session() as session:
                session.add(row)
                session.flush()
                session.add(IncidentEvent(incident_id=row.id, at=now, kind="received", detail=detail))
                return row.id, True
        except IntegrityError:
            pass  # someone else opened it first: the unique key decided
        query = select(Incident.id).where(Incident.fingerprint == fingerprint, Incident.starts_at == starts_at)
        with self.session() as session:
            existing = session.scalar(query)
        if existing is None:  # pragma: no cover - a clash on a row nobody can read would be a database bug
            raise RuntimeError(f"incident {fingerprint} {starts_at.isoformat()} clashed but cannot be read")
        return existing, False

    def add_incident_event(self, incident_id: int, kind: str, detail: str, now: datetime | None = None) -> None:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown incident event kind {kind!r}")
        with self.session() as session:
            session.add(IncidentEvent(incident_id=incident_id, at=_now(now), kind=kind, detail=detail))

    def resolve_incident(self, incident_id: int, detail: str, now: datetime | None = None) -> bool:
        """Close a firing incident (one conditional UPDATE: True for the one caller that closed it)."""
        now = _now(now)
        with self.session() as session:
            closed = (
                session.execute(
                    update(Incident)
                    .where(Incident.id == incident_id, Incident.status == "firing")
                    .values(status="resolved", resolved_at=now)
                ).rowcount
                == 1
            )
            if closed:
                session.add(IncidentEvent(incident_id=incident_id, at=now, kind="resolved", detail=detail))
            return closed

    def set_incident_action(self, incident_id: int, action_id: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(Incident).where(Incident.id == incident_id).values(action_id=action_id))

    def incidents(self, *, open_only: bool = False, site: str | None = None, limit: int = 200) -> list[IncidentRow]:
        """Newest first, each with its timeline."""
        query = select(Incident).order_by(Incident.opened_at.desc(), Incident.id.desc()).limit(limit)
        if open_only:
            query = query.where(Incident.status == "firing")
        if site is not None:
            query = query.where(Incident.site == site)
        with self.session() as session:
            rows = list(session.scalars(query))
            events: dict[int, list[IncidentEvent]] = {r.id: [] for r in rows}
            if rows:
                for event in session.scalars(
                    select(IncidentEvent).where(IncidentEvent.incident_id.in_(list(events))).order_by(IncidentEvent.id)
                ):
                    events[event.incident_id].append(event)
            return [IncidentRow.of(r, events[r.id]) for r in rows]

    def incident(self, incident_id: int) -> IncidentRow | None:
        with self.session() as session:
            row = session.get(Incident, incident_id)
            if row is None:
                return None
            events = session.scalars(
                select(IncidentEvent).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.id)
            )
            return IncidentRow.of(row, list(events))

    # -- retention -------------------------------------------------------------------------

    def purge_incidents(self, site: str, *, deliveries_before: datetime, incidents_before: datetime) -> dict[str, int]:
        """Drop deliveries processed or dead-lettered, and this site's resolved incidents (with their timelines)
        resolved, before the cut-offs; unprocessed deliveries and firing incidents stay whatever their age."""
        old = select(Incident.id).where(
            Incident.site == site, Incident.status == "resolved", Incident.resolved_at < incidents_before
        )
        with self.engine.begin() as connection:
            events = connection.execute(delete(IncidentEvent).where(IncidentEvent.incident_id.in_(old))).rowcount
            incidents = connection.execute(delete(Incident).where(Incident.id.in_(old))).rowcount
            deliveries = connection.execute(
                delete(WebhookDelivery).where(
                    func.coalesce(WebhookDelivery.processed_at, WebhookDelivery.dead_at) < deliveries_before
                )
            ).rowcount
        return {"deliveries": deliveries, "incidents": incidents, "incident_events": events}

    def open_incident_counts(self) -> dict[tuple[str, str], int]:
        """Firing incidents per (site, alertname), for /metrics."""
        query = (
            select(Incident.site, Incident.alertname, func.count())
            .where(Incident.status == "firing")
            .group_by(Incident.site, Incident.alertname)
        )
        with self.session() as session:
            return {(site, name): count for site, name, count in session.execute(query)}
