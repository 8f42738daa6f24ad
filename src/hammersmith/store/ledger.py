"""What the remediation engine writes down: findings, the action ledger, breakers, node locks, notifications, sweeps.

Anything several agents may race on (locks, breakers, notifications) is decided by one conditional statement or a
unique key in the database, never by reading first and writing after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, Update, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hammersmith.store.models import (
    KEY_LENGTH,
    Action,
    ActionRow,
    Base,
    Breaker,
    BreakerRow,
    Finding,
    Lock,
    Notification,
    Sweep,
    SweepRow,
)

# apply-mode outcomes that mean the API was (or may have been) called: they spend budget and rate
APPLIED_OUTCOMES = ("in_flight", "succeeded", "failed", "reconciled")


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _stored_key(key: str) -> str:
    """Keys past the column's width (they may embed an error text) become a readable prefix plus a digest.

    PostgreSQL would refuse an over-long key outright, and SQLite would store it; this keeps both the same.
    """
    if len(key) <= KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: KEY_LENGTH - len(digest) - 1]}~{digest}"


class LedgerMixin:
    """The ledger half of Store; Store provides the engine and the unit-of-work sessions."""

    engine: Engine
    session: Callable[[], AbstractContextManager[Session]]
    _add: Callable[[Base], int]

    # -- findings -------------------------------------------------------------------------

    def record_finding(
        self,
        *,
        site: str,
        hammer: str,
        node_uuid: str,
        node_name: str | None,
        summary: str,
        detail: str,
        sweep_id: int | None = None,
        now: datetime | None = None,
    ) -> int:
        """Store what a detector saw; return its id."""
        row = Finding(
            site=site,
            hammer=hammer,
            node_uuid=node_uuid,
            node_name=node_name,
            summary=summary,
            detail=detail,
            seen_at=_now(now),
            sweep_id=sweep_id,
        )
        return self._add(row)

    # -- the action ledger ------------------------------------------------------------------

    def record_action(
        self,
        *,
        site: str,
        hammer: str,
        node_uuid: str,
        node_name: str | None,
        trigger: str,
        mode: str,
        kind: str,
        params: dict[str, Any],
        outcome: str,
        reason: str | None = None,
        before: dict[str, Any] | None = None,
        sweep_id: int | None = None,
        agent: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Write a row: complete at once (observed, refused, escalated), or an intent (in_flight); return its id."""
        now = _now(now)
        started = now if outcome in ("escalated", "in_flight") else None
        done = now if outcome == "escalated" else None
        row = Action(
            site=site,
            hammer=hammer,
            node_uuid=node_uuid,
            node_name=node_name,
            trigger=trigger,
            mode=mode,
            kind=kind,
            params=dict(params),
            outcome=outcome,
            reason=reason,
            before=before,
            planned_at=now,
            started_at=started,
            finished_at=done,
            sweep_id=sweep_id,
            agent=agent,
        )
        return self._add(row)

    def begin_action(
        self,
        *,
        site: str,
        hammer: str,
        node_uuid: str,
        node_name: str | None,
        trigger: str,
        kind: str,
        params: dict[str, Any],
        before: dict[str, Any] | None,
        sweep_id: int | None = None,
        agent: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Write the intent, committed, before the API is called: a crash mid-call leaves it in flight, not lost."""
        return self.record_action(
            site=site,
            hammer=hammer,
            node_uuid=node_uuid,
            node_name=node_name,
            trigger=trigger,
            mode="apply",
            kind=kind,
            params=params,
            outcome="in_flight",
            before=before,
            sweep_id=sweep_id,
            agent=agent,
            now=now,
        )

    def finish_action(
        self,
        action_id: int,
        *,
        outcome: str,
        after: dict[str, Any] | None = None,
        error: str | None = None,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Settle a begun action; a reason given here replaces the one it was begun with."""
        with self.session() as session:
            row = session.get(Action, action_id)
            if row is None:
                raise LookupError(f"no action with id {action_id}")
            row.outcome = outcome
            row.after = after
            row.error = error
            if reason is not None:
                row.reason = reason
            row.finished_at = _now(now)

    def in_flight(self, site: str) -> list[ActionRow]:
        """Actions begun but never settled (the agent stopped mid-call), oldest first."""
        query = (
            select(Action)
            .where(Action.site == site, Action.outcome == "in_flight")
            .order_by(Action.started_at, Action.id)
        )
        with self.session() as session:
            return [ActionRow.of(row) for row in session.scalars(query)]

    def attempts(self, *, site: str, hammer: str, node_uuid: str, since: datetime) -> int:
        """API calls this hammer made (or may have made) on this node since `since`: its retry budget spent."""
        return self._applied(site, since, Action.hammer == hammer, Action.node_uuid == node_uuid)

    def applied_count(self, *, site: str, since: datetime, hammer: str | None = None) -> int:
        """API calls made at the site since `since`, optionally by one hammer: for rate limits and the breaker."""
        return self._applied(site, since, *([Action.hammer == hammer] if hammer is not None else []))

    def actions(
        self,
        *,
        site: str | None = None,
        hammer: str | None = None,
        node: str | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[ActionRow]:
        """Newest first; `node` matches a node's UUID or its name, `since` the time the action was planned."""
        query = select(Action).order_by(Action.planned_at.desc(), Action.id.desc()).limit(limit)
        if site is not None:
            query = query.where(Action.site == site)
        if hammer is not None:
            query = query.where(Action.hammer == hammer)
        if node is not None:
            query = query.where(or_(Action.node_uuid == node, Action.node_name == node))
        if since is not None:
            query = query.where(Action.planned_at >= since)
        with self.session() as session:
            return [ActionRow.of(row) for row in session.scalars(query)]

    def action_counts(self, site: str) -> dict[tuple[str, str], int]:
        """Ledger rows per (hammer, outcome): durable totals the exporter turns into counters."""
        query = (
            select(Action.hammer, Action.outcome, func.count())
            .where(Action.site == site)
            .group_by(Action.hammer, Action.outcome)
        )
        with self.session() as session:
            return {(hammer, outcome): count for hammer, outcome, count in session.execute(query)}

    # -- circuit breaker ------------------------------------------------------------------

    def breaker(self, site: str) -> BreakerRow | None:
        with self.session() as session:
            row = session.get(Breaker, site)
            return BreakerRow.of(row) if row is not None else None

    def open_breaker(self, site: str, reason: str, now: datetime | None = None) -> bool:
        """Open the site's breaker; True if this call opened it, False if it was open already (first reason kept)."""
        now = _now(now)
        if self._insert(Breaker, site=site, state="open", reason=reason, opened_at=now):
            return True
        reopen = (
            update(Breaker)
            .where(Breaker.site == site, Breaker.state != "open")
            .values(state="open", reason=reason, opened_at=now, reset_at=None, reset_by=None)
        )
        return self._changed(reopen)

    def reset_breaker(self, site: str, by: str, now: datetime | None = None) -> bool:
        """Close the site's breaker on a human's word; False if it was not open."""
        close = (
            update(Breaker)
            .where(Breaker.site == site, Breaker.state == "open")
            .values(state="closed", reset_at=_now(now), reset_by=by)
        )
        return self._changed(close)

    # -- node locks -----------------------------------------------------------------------

    def acquire_lock(
        self, *, site: str, node_uuid: str, holder: str, ttl_seconds: float, now: datetime | None = None
    ) -> bool:
        """Take (or refresh, or take over when expired) the lease on a node; False if someone else holds it.

        The INSERT settles a free node; the conditional UPDATE settles a held one, and each is a single statement,
        so of any number of racing agents exactly one wins. A lock released between the two reads as held: the
        caller retries on its next sweep, which is the safe side.
        """
        now = _now(now)
        expires_at = now + timedelta(seconds=ttl_seconds)
        if self._insert(Lock, site=site, node_uuid=node_uuid, holder=holder, acquired_at=now, expires_at=expires_at):
            return True
        take = (
            update(Lock)
            .where(
                Lock.site == site,
                Lock.node_uuid == node_uuid,
                or_(Lock.expires_at < now, Lock.holder == holder),
            )
            .values(holder=holder, acquired_at=now, expires_at=expires_at)
        )
        return self._changed(take)

    def release_lock(self, *, site: str, node_uuid: str, holder: str) -> None:
        """Drop the lease, but only our own: a lock taken over after expiry belongs to its new holder."""
        with self.engine.begin() as connection:
            connection.execute(
                delete(Lock).where(Lock.site == site, Lock.node_uuid == node_uuid, Lock.holder == holder)
            )

    # -- notifications ----------------------------------------------------------------------

    def already_notified(self, site: str, key: str) -> bool:
        query = select(Notification.id).where(Notification.site == site, Notification.key == _stored_key(key))
        with self.session() as session:
            return session.scalar(query) is not None

    def mark_notified(self, site: str, key: str, now: datetime | None = None) -> bool:
        """Claim the right to send this message; False if it was claimed already, so only one agent sends."""
        return self._insert(Notification, site=site, key=_stored_key(key), sent_at=_now(now))

    # -- sweeps ----------------------------------------------------------------------------

    def record_sweep(
        self, *, site: str, started_at: datetime, finished_at: datetime, ok: bool, summary: dict[str, Any]
    ) -> int:
        row = Sweep(site=site, started_at=started_at, finished_at=finished_at, ok=ok, summary=dict(summary))
        return self._add(row)

    def last_sweep(self, site: str, ok_only: bool = True) -> SweepRow | None:
        """The newest sweep of the site, by default the newest that succeeded."""
        query = select(Sweep).where(Sweep.site == site).order_by(Sweep.started_at.desc(), Sweep.id.desc()).limit(1)
        if ok_only:
            query = query.where(Sweep.ok.is_(True))
        with self.session() as session:
            row = session.scalar(query)
            return SweepRow.of(row) if row is not None else None

    # -- helpers ---------------------------------------------------------------------------

    def _insert(self, model: type[Breaker | Lock | Notification], **values: Any) -> bool:
        """INSERT in a transaction of its own (a failed one poisons a PostgreSQL transaction); False on a clash."""
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(model).values(**values))
        except IntegrityError:
            return False
        return True

    def _changed(self, statement: Update) -> bool:
        """Run one UPDATE in its own transaction; True if it changed a row."""
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

    def _applied(self, site: str, since: datetime, *where: ColumnElement[bool]) -> int:
        query = (
            select(func.count())
            .select_from(Action)
            .where(
                Action.site == site,
                Action.mode == "apply",
                Action.outcome.in_(APPLIED_OUTCOMES),
                Action.started_at >= since,
                *where,
            )
        )
        with self.session() as session:
            return session.scalar(query) or 0
