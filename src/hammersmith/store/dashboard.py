"""The dashboard's read queries: each bounded (a time range on an indexed column, a keyset page, or a limit), so a
page costs the same with a year of sweeps and ledger as with a day of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Engine, Select, and_, cast, func, literal_column, or_, select
from sqlalchemy.orm import Session

from hammersmith.store.maintenance import CLOSED, MaintenanceRow
from hammersmith.store.models import (
    Action,
    ActionRow,
    DetectResult,
    Finding,
    Incident,
    IncidentRow,
    Maintenance,
    Sweep,
)


@dataclass(frozen=True)
class FindingRow:
    id: int
    site: str
    hammer: str
    node_uuid: str
    node_name: str | None
    summary: str
    detail: str
    seen_at: datetime
    last_seen_at: datetime | None
    sweep_id: int | None

    @classmethod
    def of(cls, row: Finding) -> FindingRow:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class NodeCounts:
    """One point of the nodes-by-state plot: what one sweep's snapshot counted."""

    at: datetime
    provision_state: dict[str, int]
    maintenance: dict[str, int]


@dataclass(frozen=True)
class ResultBucket:
    """Probe or smoke outcomes of one check in one time bucket (bucket = seconds since the epoch // width)."""

    source: str
    name: str
    bucket: int
    status: str
    count: int


def _bucket(column: Any, dialect: str, width: int) -> ColumnElement[Any]:
    """The time slice of a UTC timestamp column, in SQL: whole seconds since 1970 // width. The width is written
    into the SQL, not bound: PostgreSQL only matches a SELECT expression to its GROUP BY when both are the same
    text, and two bind parameters are two different texts."""
    seconds = (
        cast(func.strftime("%s", column), BigInteger)
        if dialect == "sqlite"
        else cast(func.extract("epoch", column), BigInteger)
    )
    return seconds // literal_column(str(int(width)), BigInteger)


class DashboardMixin:
    """The dashboard half of Store; Store provides the engine and the unit-of-work sessions."""

    engine: Engine
    session: Callable[[], AbstractContextManager[Session]]
    _incidents_with_events: Callable[[Select[tuple[Incident]]], list[IncidentRow]]  # IncidentsMixin's

    def node_counts(
        self, site: str, since: datetime, *, now: datetime | None = None, points: int = 300
    ) -> list[NodeCounts]:
        """Nodes by provision state and maintenance per sweep since `since`, oldest first, at most about `points`
        of them: the last sweep of each equal time slice, chosen in SQL over the (site, started_at) index, and only
        the summary's `nodes` part read back."""
        now = now or datetime.now(UTC)
        width = max(1, int((now - since).total_seconds() / max(1, points)))
        bucket = _bucket(Sweep.started_at, self.engine.dialect.name, width)
        newest = (
            select(func.max(Sweep.id))
            .where(Sweep.site == site, Sweep.started_at >= since)
            .group_by(bucket)
            .scalar_subquery()
        )
        query = (
            select(Sweep.started_at, Sweep.summary["nodes"])
            .where(Sweep.id.in_(newest))
            .order_by(Sweep.started_at, Sweep.id)
        )
        found: list[NodeCounts] = []
        with self.session() as session:
            for at, nodes in session.execute(query):
                if isinstance(nodes, dict):  # sweeps recorded before the dashboard kept no counts
                    found.append(
                        NodeCounts(at, dict(nodes.get("provision_state") or {}), dict(nodes.get("maintenance") or {}))
                    )
        return found

    def ledger_page(
        self,
        *,
        site: str | None = None,
        hammer: str | None = None,
        node: str | None = None,
        nodes: Sequence[tuple[str, str]] = (),
        outcome: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[ActionRow]:
        """Newest first by id, `limit` rows below `before_id` (a keyset page: no OFFSET to count through).
        `nodes`: (site, node UUID) pairs, read through the (site, node_uuid) index; `node` matches a UUID or a name
        anywhere (no index has the name: the caller resolves it to `nodes` where it can)."""
        query = select(Action).order_by(Action.id.desc()).limit(limit)
        for column, value in ((Action.site, site), (Action.hammer, hammer), (Action.outcome, outcome)):
            if value:
                query = query.where(column == value)
        if node:
            query = query.where(or_(Action.node_uuid == node, Action.node_name == node))
        if nodes:
            query = query.where(or_(*(and_(Action.site == s, Action.node_uuid == u) for s, u in nodes)))
        if since is not None:
            query = query.where(Action.planned_at >= since)
        if before_id is not None:
            query = query.where(Action.id < before_id)
        with self.session() as session:
            return [ActionRow.of(row) for row in session.scalars(query)]

    def node_findings(self, site: str, node_uuid: str, limit: int = 100) -> list[FindingRow]:
        """The node's findings, newest first (the (site, node_uuid) index)."""
        query = (
            select(Finding)
            .where(Finding.site == site, Finding.node_uuid == node_uuid)
            .order_by(Finding.seen_at.desc(), Finding.id.desc())
            .limit(limit)
        )
        with self.session() as session:
            return [FindingRow.of(row) for row in session.scalars(query)]

    def node_actions(self, site: str, node_uuid: str, limit: int = 100) -> list[ActionRow]:
        """The node's ledger rows, newest first (the (site, node_uuid) index)."""
        query = (
            select(Action)
            .where(Action.site == site, Action.node_uuid == node_uuid)
            .order_by(Action.id.desc())
            .limit(limit)
        )
        with self.session() as session:
            return [ActionRow.of(row) for row in session.scalars(query)]

    def recent_findings(self, site: str, since: datetime, limit: int = 50) -> list[FindingRow]:
        """Findings seen since `since` (the last sweep's start: what is wrong now), newest first."""
        query = (
            select(Finding)
            .where(Finding.site == site, func.coalesce(Finding.last_seen_at, Finding.seen_at) >= since)
            .order_by(Finding.id.desc())
            .limit(limit)
        )
        with self.session() as session:
            return [FindingRow.of(row) for row in session.scalars(query)]

    def action_row(self, action_id: int) -> ActionRow | None:
        with self.session() as session:
            row = session.get(Action, action_id)
            return None if row is None else ActionRow.of(row)

    def node_uuid_by_name(self, site: str, name: str) -> str | None:
        """A node the last snapshot does not list (gone, or no snapshot yet) found by its name in the records."""
        for model in (Finding, Action, Maintenance):
            query = select(model.node_uuid).where(model.site == site, model.node_name == name).limit(1)
            with self.session() as session:
                found = session.scalar(query)
            if found is not None:
                return str(found)
        return None

    def node_known(self, site: str, node_uuid: str) -> bool:
        """Has anything been recorded about this node UUID at the site?"""
        for model in (Finding, Action, Maintenance):
            query = select(model.id).where(model.site == site, model.node_uuid == node_uuid).limit(1)
            with self.session() as session:
                if session.scalar(query) is not None:
                    return True
        return False

    def node_incidents(self, site: str, refs: Sequence[str], limit: int = 50) -> list[IncidentRow]:
        """Incidents whose `node` label is the node's UUID or name, newest first."""
        query = (
            select(Incident)
            .where(Incident.site == site, Incident.node.in_([r for r in refs if r]))
            .order_by(Incident.id.desc())
            .limit(limit)
        )
        return self._incidents_with_events(query)

    def node_maintenances(self, site: str, node_uuid: str, limit: int = 50) -> list[MaintenanceRow]:
        query = (
            select(Maintenance)
            .where(Maintenance.site == site, Maintenance.node_uuid == node_uuid)
            .order_by(Maintenance.id.desc())
            .limit(limit)
        )
        with self.session() as session:
            return [MaintenanceRow.of(row) for row in session.scalars(query)]

    def incident_page(
        self,
        *,
        site: str | None = None,
        open_only: bool = False,
        alertname: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[IncidentRow]:
        """Newest first by id, a keyset page like the ledger's, each with its timeline."""
        query = select(Incident).order_by(Incident.id.desc()).limit(limit)
        if site:
            query = query.where(Incident.site == site)
        if open_only:
            query = query.where(Incident.status == "firing")
        if alertname:
            query = query.where(Incident.alertname == alertname)
        if before_id is not None:
            query = query.where(Incident.id < before_id)
        return self._incidents_with_events(query)

    def alertnames(self, limit: int = 200) -> list[str]:
        """Alert names seen in incidents, for the filter's choices."""
        query = select(Incident.alertname).distinct().order_by(Incident.alertname).limit(limit)
        with self.session() as session:
            return list(session.scalars(query))

    def maintenances_between(self, start: datetime, end: datetime, site: str | None = None) -> list[MaintenanceRow]:
        """Maintenances that overlap [start, end): begun before `end` and not over before `start` (an open one
        without `until` runs on), oldest start first."""
        over = func.coalesce(Maintenance.ended_at, Maintenance.until)
        query = (
            select(Maintenance)
            .where(
                Maintenance.start_at < end,
                or_(Maintenance.state.not_in(CLOSED), over.is_(None), over >= start),
                Maintenance.state != "cancelled",
            )
            .order_by(Maintenance.start_at, Maintenance.id)
            .limit(2000)
        )
        if site:
            query = query.where(Maintenance.site == site)
        with self.session() as session:
            return [MaintenanceRow.of(row) for row in session.scalars(query)]

    def result_buckets(self, site: str, since: datetime, width_seconds: int) -> list[ResultBucket]:
        """Probe and smoke outcomes since `since`, counted per check, time bucket and status in SQL (the
        (site, started_at) index), so a week of minutely probes is a few hundred rows, not tens of thousands."""
        bucket = _bucket(DetectResult.started_at, self.engine.dialect.name, width_seconds).label("bucket")
        query = (
            select(DetectResult.source, DetectResult.name, bucket, DetectResult.status, func.count())
            .where(DetectResult.site == site, DetectResult.started_at >= since)
            .group_by(DetectResult.source, DetectResult.name, bucket, DetectResult.status)
        )
        with self.session() as session:
            return [ResultBucket(s, n, int(b), st, c) for s, n, b, st, c in session.execute(query)]
