"""A human's pause of the hammers at a site, and the nodes hammersmith's own maintenance holds: both stop acting.

Findings are still recorded while paused; only acting stops, so resuming picks up exactly where detection is.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from hammersmith.store.ledger import _now, human_act
from hammersmith.store.models import Action, Maintenance, Pause

#: every hammer at the site
ALL = "*"
#: maintenance states in which hammersmith owns the node: hammers never touch it
MANAGED_STATES = ("waiting", "in-maintenance", "returning")
#: states of a maintenance not yet over (requested: not yet waiting), whose `until` can be overdue
OPEN_STATES = ("requested", *MANAGED_STATES)


@dataclass(frozen=True)
class PauseRow:
    id: int
    site: str
    hammer: str
    reason: str
    by: str
    created_at: datetime
    until: datetime | None
    resumed_at: datetime | None
    resumed_by: str | None

    @classmethod
    def of(cls, row: Pause) -> PauseRow:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    def covers(self, hammer: str) -> bool:
        return self.hammer in (ALL, hammer)

    @property
    def why(self) -> str:
        """The refusal reason the ledger shows for every action this pause holds back."""
        until = f" (until {self.until.isoformat(timespec='seconds')})" if self.until else ""
        return f"paused by {self.by}: {self.reason}{until}"


@dataclass(frozen=True)
class OpenMaintenance:
    """The fields of a maintenance row that hands-off refusals and the overdue metric need."""

    id: int
    node_uuid: str
    node_name: str | None
    kind: str
    state: str
    by: str
    reason: str
    until: datetime | None

    @property
    def managed(self) -> bool:
        return self.state in MANAGED_STATES

    @property
    def why(self) -> str:
        return f"in maintenance #{self.id} by {self.by}: {self.reason}"


def held(pauses: list[PauseRow], managed: dict[str, str], hammer: str, node_uuid: str) -> str | None:
    """Why `hammer` must not act on `node_uuid` (a managed maintenance first, then a pause), or None."""
    if node_uuid in managed:
        return managed[node_uuid]
    return next((p.why for p in pauses if p.covers(hammer)), None)


class PausesMixin:
    """The pauses half of Store; Store provides the unit-of-work sessions."""

    session: Callable[[], AbstractContextManager[Session]]

    def pause(
        self,
        site: str,
        hammer: str,
        reason: str,
        by: str,
        until: datetime | None,
        now: datetime | None = None,
        trigger: str = "cli",
    ) -> PauseRow:
        """Pause one hammer (or ALL) at a site; written to the ledger in the same transaction, with who did it."""
        now = _now(now)
        row = Pause(site=site, hammer=hammer, reason=reason, by=by, created_at=now, until=until)
        with self.session() as session:
            session.add(row)
            session.flush()
            paused = PauseRow.of(row)
            session.add(_ledger_row(paused, "pause", by, paused.why, now, trigger))
        return paused

    def resume(
        self, site: str, hammer: str, by: str, now: datetime | None = None, trigger: str = "cli"
    ) -> list[PauseRow]:
        """End the active pauses of `hammer` at the site (ALL: every pause there); returns those it ended."""
        now = _now(now)
        query = select(Pause).where(*_active(site, now))
        if hammer != ALL:
            query = query.where(Pause.hammer == hammer)
        with self.session() as session:
            rows = list(session.scalars(query.order_by(Pause.id)))
            for row in rows:
                row.resumed_at, row.resumed_by = now, by
            session.flush()
            resumed = [PauseRow.of(row) for row in rows]
            for pause in resumed:
                session.add(_ledger_row(pause, "resume", by, f"resumed by {by} ({pause.why})", now, trigger))
        return resumed

    def pauses(self, site: str, now: datetime | None = None) -> list[PauseRow]:
        """Active pauses at the site: not resumed, and without an `until` or with one still ahead."""
        query = select(Pause).where(*_active(site, _now(now))).order_by(Pause.id)
        with self.session() as session:
            return [PauseRow.of(row) for row in session.scalars(query)]

    def maintenance_holds(self, site: str) -> list[OpenMaintenance]:
        """Maintenances of the site that are not over, read straight from the table (whoever writes it)."""
        query = select(Maintenance).where(Maintenance.site == site, Maintenance.state.in_(OPEN_STATES))
        with self.session() as session:
            return [
                OpenMaintenance(**{f.name: getattr(row, f.name) for f in fields(OpenMaintenance)})
                for row in session.scalars(query.order_by(Maintenance.id))
            ]

    def managed_maintenance(self, site: str) -> dict[str, str]:
        """node UUID -> why hammers leave it alone, for nodes in a hammersmith-managed maintenance. An adopted one
        is still the human's until `maint end` returns it: the operator-maintenance rule refuses it, with the reason
        Ironic has now."""
        return {
            m.node_uuid: m.why
            for m in self.maintenance_holds(site)
            if m.managed and (m.kind, m.state) != ("adopted", "in-maintenance")
        }


def _active(site: str, now: datetime) -> tuple[ColumnElement[bool], ...]:
    return Pause.site == site, Pause.resumed_at.is_(None), or_(Pause.until.is_(None), Pause.until > now)


def _ledger_row(pause: PauseRow, kind: str, by: str, reason: str, now: datetime, trigger: str) -> Action:
    """Pauses are a human's act on the whole site: one ledger row, hammer "pause"."""
    params = {"hammer": pause.hammer, "reason": pause.reason, "until": pause.until.isoformat() if pause.until else None}
    return human_act(site=pause.site, hammer="pause", subject=ALL, kind=kind, by=by, reason=reason, now=now,
                     trigger=trigger, params=params)  # fmt: skip
