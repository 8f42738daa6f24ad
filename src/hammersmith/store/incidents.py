"""Incidents from Alertmanager: the deliveries as received, one incident per (fingerprint, startsAt), its timeline.

Who opens an incident is decided by the unique key in the database, never by reading first: of three agents
or threads handed the same alert at once, exactly one gets `opened=True`, and only that one may act on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hammersmith.store.ledger import _now, human_act
from hammersmith.store.models import Base, DeliveryRow, Incident, IncidentEvent, IncidentRow, WebhookDelivery

#: hand_fix: a person's time recorded on an incident that was already resolved (it closed nothing)
EVENT_KINDS = ("received", "duplicate", "resolved", "action", "no_action", "error", "hand_fix")
HAND_FIX = "hand_fix"
#: the ledger's name for a person's fix, in the hammer column as "pause" is for a pause
BY_HAND = "by-hand"


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

    def resolve_incident_by_hand(
        self,
        incident_id: int,
        *,
        by: str,
        minutes: float,
        note: str,
        now: datetime | None = None,
        trigger: str = "cli",
    ) -> IncidentRow | None:
        """A person fixed it: close the incident with who, how many minutes and what they did, its timeline event
        and a ledger row, in one transaction; None if there is no such incident.

        An incident already resolved (Alertmanager saw the alert clear, or someone closed it) stays as it was, but
        the person's minutes are added and their note kept: the time was spent all the same, and it is what
        `hammersmith toil` learns hand-fix times from. Its event is then `hand_fix`, not `resolved`.
        """
        if not math.isfinite(minutes) or minutes < 0:
            raise ValueError(f"minutes must be a finite number >= 0, not {minutes!r}")
        now, by, note = _now(now), by.strip()[:255], note.strip()
        with self.session() as session:
            # the UPDATE first: it takes the write lock (SQLite) or the row lock (PostgreSQL) before anything is read
            closed = (
                session.execute(
                    update(Incident)
                    .where(Incident.id == incident_id, Incident.status == "firing")
                    .values(status="resolved", resolved_at=now, resolved_by=by, manual_minutes=minutes, note=note)
                ).rowcount
                == 1
            )
            if not closed:
                added = update(Incident).where(Incident.id == incident_id)
                spent = func.coalesce(Incident.manual_minutes, 0.0) + minutes
                if session.execute(added.values(manual_minutes=spent)).rowcount != 1:
                    return None
            row = session.get(Incident, incident_id, populate_existing=True)
            assert row is not None  # updated just now, in this transaction
            if not closed:
                row.resolved_by = _joined(row.resolved_by, by)
                row.note = f"{row.note}\n{by}: {note}" if row.note else note
            spent_text = f"{minutes:g} min"
            if closed:
                kind, detail = "resolved", f"resolved by hand by {by} ({spent_text}): {note}"
            else:
                when = row.resolved_at.isoformat(timespec="seconds") if row.resolved_at else "before"
                kind, detail = HAND_FIX, f"already resolved ({when}); {by} recorded {spent_text} by hand: {note}"
            session.add(IncidentEvent(incident_id=incident_id, at=now, kind=kind, detail=detail))
            params = {
                "incident": incident_id,
                "alertname": row.alertname,
                "minutes": minutes,
                "note": note,
                "already_resolved": not closed,
            }
            session.add(
                human_act(site=row.site, hammer=BY_HAND, subject=f"incident/{incident_id}", node_name=row.node,
                          kind="resolve" if closed else "record-time", by=by, reason=detail, now=now,
                          trigger=trigger, params=params)
            )  # fmt: skip
            session.flush()
            events = session.scalars(
                select(IncidentEvent).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.id)
            )
            return IncidentRow.of(row, list(events))

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
        return self._incidents_with_events(query)

    def _incidents_with_events(self, query: Select[tuple[Incident]]) -> list[IncidentRow]:
        """The incidents the query selects, each with its timeline: two queries, however many incidents."""
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


def _joined(names: str | None, name: str) -> str:
    """Everyone who put time into an incident, once each, within the column's width."""
    known = [n for n in (names or "").split(", ") if n]
    return ", ".join(known if name in known else [*known, name])[:255]
