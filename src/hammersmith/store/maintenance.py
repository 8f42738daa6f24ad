"""Maintenances: one row per node taken out of service (by `hammersmith maint`, a part-time window, or adopted from
a human), moved through its states by the workflow (`hammersmith.maintenance.workflow`).

At most one maintenance per node and site is open (not done, not cancelled): `open_maintenance` refuses a second one
in the same transaction that writes it, so two operators starting the same node at once get one record, not two.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from hammersmith.errors import HammersmithError
from hammersmith.store.ledger import _now
from hammersmith.store.models import Maintenance

STATES = ("requested", "waiting", "in-maintenance", "returning", "done", "cancelled")
CLOSED = ("done", "cancelled")
#: columns the workflow may change after the row is written
MUTABLE = frozenset(
    {"kind", "state", "reason", "ticket", "until", "start_at", "lease_id", "silence_id", "step", "error"}
)


class MaintenanceConflict(HammersmithError):
    """The node already has an open maintenance at this site."""


@dataclass(frozen=True)
class MaintenanceRow:
    """A maintenance as read back: plain data, usable after its session has closed."""

    id: int
    site: str
    node_uuid: str
    node_name: str | None
    kind: str
    state: str
    reason: str
    ticket: str | None
    by: str
    start_at: datetime
    until: datetime | None
    lease_id: str | None
    silence_id: str | None
    step: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    @classmethod
    def of(cls, row: Maintenance) -> MaintenanceRow:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    @property
    def open(self) -> bool:
        return self.state not in CLOSED

    @property
    def node(self) -> str:
        return self.node_name or self.node_uuid

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def _open_of(site: str, node_uuid: str) -> Any:
    return select(Maintenance).where(
        Maintenance.site == site, Maintenance.node_uuid == node_uuid, Maintenance.state.not_in(CLOSED)
    )


class MaintenanceMixin:
    """The maintenance half of Store; Store provides the engine and the unit-of-work sessions."""

    engine: Engine
    session: Callable[[], AbstractContextManager[Session]]

    def open_maintenance(
        self,
        *,
        site: str,
        node_uuid: str,
        node_name: str | None,
        kind: str,
        state: str,
        reason: str,
        by: str,
        start_at: datetime,
        until: datetime | None,
        ticket: str | None = None,
        step: str | None = None,
        now: datetime | None = None,
    ) -> MaintenanceRow:
        """Write a new maintenance; raises MaintenanceConflict naming the open one if the node has one already."""
        now = _now(now)
        with self.session() as session:
            existing = session.scalar(_open_of(site, node_uuid).with_for_update())
            if existing is not None:
                raise MaintenanceConflict(
                    f"node {node_name or node_uuid} already has open maintenance #{existing.id} "
                    f"({existing.kind}, {existing.state}) at site {site}",
                    hint=f"hammersmith maint show {existing.id}",
                )
            row = Maintenance(
                site=site,
                node_uuid=node_uuid,
                node_name=node_name,
                kind=kind,
                state=state,
                reason=reason,
                ticket=ticket,
                by=by,
                start_at=start_at,
                until=until,
                lease_id=None,
                silence_id=None,
                step=step,
                error=None,
                created_at=now,
                updated_at=now,
                ended_at=None,
            )
            session.add(row)
            session.flush()
            return MaintenanceRow.of(row)

    def update_maintenance(self, maintenance_id: int, now: datetime | None = None, **changes: Any) -> MaintenanceRow:
        """Change the given columns; a move to done or cancelled stamps `ended_at`."""
        unknown = set(changes) - MUTABLE
        if unknown:
            raise ValueError(f"not changeable: {', '.join(sorted(unknown))}")
        now = _now(now)
        with self.session() as session:
            row = session.get(Maintenance, maintenance_id)
            if row is None:
                raise KeyError(maintenance_id)
            for column, value in changes.items():
                setattr(row, column, value)
            row.updated_at = now
            if changes.get("state") in CLOSED:
                row.ended_at = now
            session.flush()
            return MaintenanceRow.of(row)

    def maintenance(self, maintenance_id: int) -> MaintenanceRow | None:
        with self.session() as session:
            row = session.get(Maintenance, maintenance_id)
            return None if row is None else MaintenanceRow.of(row)

    def open_maintenance_of(self, site: str, node_uuid: str) -> MaintenanceRow | None:
        with self.session() as session:
            row = session.scalar(_open_of(site, node_uuid))
            return None if row is None else MaintenanceRow.of(row)

    def maintenances(
        self, *, site: str | None = None, node: str | None = None, open_only: bool = False, limit: int = 200
    ) -> list[MaintenanceRow]:
        """Newest first; `node` matches a UUID or a name."""
        query = select(Maintenance).order_by(Maintenance.created_at.desc(), Maintenance.id.desc()).limit(limit)
        if site is not None:
            query = query.where(Maintenance.site == site)
        if node is not None:
            query = query.where(or_(Maintenance.node_uuid == node, Maintenance.node_name == node))
        if open_only:
            query = query.where(Maintenance.state.not_in(CLOSED))
        with self.session() as session:
            return [MaintenanceRow.of(row) for row in session.scalars(query)]
