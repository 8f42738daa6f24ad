"""What the remediation engine writes down: findings, the action ledger, breakers, node locks, notifications, sweeps.

Anything several agents may race on (locks, breakers, notifications) is decided by one conditional statement or a
unique key in the database, never by reading first and writing after.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, Update, delete, func, insert, or_, select, update
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

# apply-mode outcomes that mean the API was (or may have been) called: they spend budget and rate.
# succeeded: the call returned, the fix not yet verified; fixed / ineffective: verified gone / still there;
# unverified: the call returned but the follow-up read failed or the node never settled
APPLIED_OUTCOMES = ("in_flight", "succeeded", "failed", "reconciled", "fixed", "ineffective", "unverified")


class Denied(Exception):
    """begin_action's guard said no: the breaker is (or was just) open, or the hourly rate is spent."""

    def __init__(self, reason: str, opened: bool = False) -> None:
        super().__init__(reason)
        self.opened = opened


def stable(text: str) -> str:
    """A reason or summary without its numbers: "changed 12 s ago" and "changed 17 s ago" say the same thing."""
    return re.sub(r"\d+(\.\d+)?", "#", text)


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


def human_act(
    *,
    site: str,
    hammer: str,
    subject: str,
    kind: str,
    by: str,
    reason: str,
    now: datetime,
    trigger: str = "cli",
    params: dict[str, Any] | None = None,
    node_name: str | None = None,
) -> Action:
    """A person's act (a pause, an account, a status post, a hand fix, a breaker reset) as one ledger row: mode
    manual, outcome recorded, `agent` the person; `subject` is what it was done to (a node, a user, "*")."""
    return Action(
        site=site,
        hammer=hammer,
        node_uuid=subject,
        node_name=node_name,
        trigger=trigger,
        mode="manual",
        kind=kind,
        params=params or {},
        outcome="recorded",
        reason=reason,
        planned_at=now,
        finished_at=now,
        agent=by,
    )


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
        """Store what a detector saw; the same finding (numbers aside) as the node's latest only moves its
        `last_seen_at`, so a fault that stays for a week is one row, not one per sweep. Return the row's id."""
        now = _now(now)
        latest = (
            select(Finding)
            .where(Finding.site == site, Finding.hammer == hammer, Finding.node_uuid == node_uuid)
            .order_by(Finding.seen_at.desc(), Finding.id.desc())
            .limit(1)
        )
        with self.session() as session:
            row = session.scalar(latest)
            if row is not None and stable(row.summary) == stable(summary):
                row.last_seen_at = now
                return row.id
        return self._add(
            Finding(
                site=site,
                hammer=hammer,
                node_uuid=node_uuid,
                node_name=node_name,
                summary=summary,
                detail=detail,
                seen_at=now,
                last_seen_at=now,
                sweep_id=sweep_id,
            )
        )

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
        guard: Guard | None = None,
        now: datetime | None = None,
    ) -> int:
        """Write the intent, committed, before the API is called: a crash mid-call leaves it in flight, not lost.

        With a `guard`, the breaker and the hourly rate are decided in the same transaction that writes the intent,
        behind a write on the site's breaker row (a row lock on PostgreSQL, the write lock on SQLite): agents that
        race see each other's intents, never a count read before the other wrote. Raises Denied.
        """
        now = _now(now)
        row = Action(
            site=site,
            hammer=hammer,
            node_uuid=node_uuid,
            node_name=node_name,
            trigger=trigger,
            mode="apply",
            kind=kind,
            params=dict(params),
            outcome="in_flight",
            before=before,
            planned_at=now,
            started_at=now,
            sweep_id=sweep_id,
            agent=agent,
        )
        if guard is None:
            return self._add(row)
        self._insert(Breaker, site=site, state="closed", reason="", opened_at=now)  # the row to serialise on
        denied: Denied | None = None
        with self.session() as session:
            session.execute(update(Breaker).where(Breaker.site == site).values(state=Breaker.state))
            breaker = session.get(Breaker, site)
            assert breaker is not None
            if breaker.state == "open":
                raise Denied(f"circuit breaker open: {breaker.reason}")
            hourly = session.scalar(self._applied_query(site, now - timedelta(hours=1), Action.hammer == hammer))
            if (hourly or 0) >= guard.per_hour:
                raise Denied(f"rate limit: {hammer} made {hourly} actions in the last hour (per_hour {guard.per_hour})")
            recent = self._acted(session, site, now - timedelta(minutes=guard.window_minutes))
            trip = guard.verdict(len({n for _, n, _ in recent} | {node_uuid}))
            if trip:
                driven = describe([*recent, (hammer, node_uuid, node_name)])
                breaker.state, breaker.reason, breaker.opened_at = "open", f"{trip}; driven by {driven}", now
                breaker.reset_at = breaker.reset_by = None
                denied = Denied(f"circuit breaker open: {breaker.reason}", opened=True)
            else:
                session.add(row)
                session.flush()
                return row.id
        raise denied

    def finish_action(
        self,
        action_id: int,
        *,
        outcome: str,
        after: dict[str, Any] | None = None,
        error: str | None = None,
        reason: str | None = None,
        verified: bool = False,
        now: datetime | None = None,
    ) -> None:
        """Settle a begun action; a reason given here replaces the one it was begun with. `verified`: the outcome
        (fixed, ineffective) comes from looking at the node after it settled."""
        with self.session() as session:
            row = session.get(Action, action_id)
            if row is None:
                raise LookupError(f"no action with id {action_id}")
            row.outcome = outcome
            row.after = after
            row.error = error
            if reason is not None:
                row.reason = reason
            if verified:  # the call's own finish stays: verified_at - finished_at is Ironic's work
                row.verified_at = _now(now)
                row.finished_at = row.finished_at or row.verified_at
            else:
                row.finished_at = _now(now)

    def pending(self, site: str, node_uuid: str | None = None) -> list[ActionRow]:
        """Actions whose call returned but whose fix is not verified yet (the node was still busy), oldest first;
        optionally of one node."""
        query = (
            select(Action)
            .where(Action.site == site, Action.mode == "apply", Action.outcome == "succeeded")
            .order_by(Action.started_at, Action.id)
        )
        if node_uuid is not None:
            query = query.where(Action.node_uuid == node_uuid)
        with self.session() as session:
            return [ActionRow.of(row) for row in session.scalars(query)]

    def ineffective(self, *, site: str, hammer: str, node_uuid: str, kind: str, since: datetime) -> bool:
        """Was this hammer's latest verified action of this kind on this node ineffective? Then repeating it blindly
        is pointless (a fix that worked in between resets this)."""
        query = (
            select(Action.outcome)
            .where(
                Action.site == site,
                Action.hammer == hammer,
                Action.node_uuid == node_uuid,
                Action.kind == kind,
                Action.outcome.in_(("fixed", "ineffective")),
                Action.started_at >= since,
            )
            .order_by(Action.started_at.desc(), Action.id.desc())
            .limit(1)
        )
        with self.session() as session:
            return session.scalar(query) == "ineffective"

    def acted_nodes(self, site: str, since: datetime) -> list[tuple[str, str, str | None]]:
        """(hammer, node UUID, node name) acted on since `since`, each once: what the breaker counts."""
        with self.session() as session:
            return self._acted(session, site, since)

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

    def mttr(self, site: str) -> dict[str, tuple[int, float]]:
        """Per hammer: (fixes, total seconds from the action to the verified fix), for the MTTR the exporter serves."""
        query = select(Action.hammer, Action.started_at, Action.verified_at).where(
            Action.site == site, Action.outcome == "fixed", Action.verified_at.is_not(None)
        )
        totals: dict[str, tuple[int, float]] = {}
        with self.session() as session:
            for hammer, started, verified in session.execute(query):
                count, seconds = totals.get(hammer, (0, 0.0))
                totals[hammer] = (count + 1, seconds + max(0.0, (verified - started).total_seconds()))
        return totals

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

    def reset_breaker(self, site: str, by: str, now: datetime | None = None, trigger: str = "cli") -> bool:
        """Close the site's breaker on a human's word, with a ledger row naming them; False if it was not open."""
        now = _now(now)
        close = (
            update(Breaker)
            .where(Breaker.site == site, Breaker.state == "open")
            .values(state="closed", reset_at=now, reset_by=by)
        )
        with self.session() as session:
            if session.execute(close).rowcount != 1:  # type: ignore[attr-defined]
                return False
            reason = f"breaker reset by {by}"
            session.add(human_act(site=site, hammer="breaker", subject="*", kind="reset", by=by, reason=reason,
                                  now=now, trigger=trigger))  # fmt: skip
        return True

    # -- node locks -----------------------------------------------------------------------

    def acquire_lock(
        self,
        *,
        site: str,
        node_uuid: str,
        holder: str,
        ttl_seconds: float,
        take_from: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Take (or refresh, or take over when expired) the lease on a node; False if someone else holds it.

        The INSERT settles a free node; the conditional UPDATE settles a held one, and each is a single statement,
        so of any number of racing agents exactly one wins. A lock released between the two reads as held: the
        caller retries on its next sweep, which is the safe side. `holder` is unique per acquisition (see
        react.safety.node_lock), so two threads of one process never share a lock. `take_from`: a holder known to
        be dead (its process is gone), whose lock need not wait for its expiry.
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
                or_(Lock.expires_at < now, Lock.holder == holder, Lock.holder == (take_from or holder)),
            )
            .values(holder=holder, acquired_at=now, expires_at=expires_at)
        )
        return self._changed(take)

    def renew_lock(
        self, *, site: str, node_uuid: str, holder: str, ttl_seconds: float, now: datetime | None = None
    ) -> bool:
        """Extend our own lease (a long action); False if it is no longer ours."""
        renew = (
            update(Lock)
            .where(Lock.site == site, Lock.node_uuid == node_uuid, Lock.holder == holder)
            .values(expires_at=_now(now) + timedelta(seconds=ttl_seconds))
        )
        return self._changed(renew)

    def lock_holder(self, *, site: str, node_uuid: str) -> str | None:
        with self.session() as session:
            row = session.get(Lock, (site, node_uuid))
            return row.holder if row is not None else None

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

    def notification_keys(self, site: str, prefix: str) -> list[str]:
        query = select(Notification.key).where(Notification.site == site, Notification.key.startswith(prefix))
        with self.session() as session:
            return list(session.scalars(query))

    def forget_notifications(self, site: str, keys: list[str]) -> int:
        """The fault behind these messages is resolved: if it comes back, it is news again."""
        if not keys:
            return 0
        with self.engine.begin() as connection:
            gone = delete(Notification).where(Notification.site == site, Notification.key.in_(keys))
            return connection.execute(gone).rowcount

    # -- retention ---------------------------------------------------------------------------

    def purge(self, site: str, *, findings_before: datetime, actions_before: datetime) -> dict[str, int]:
        """Drop findings and notifications last seen, and finished ledger rows planned, before the cut-offs."""
        with self.engine.begin() as connection:
            findings = connection.execute(
                delete(Finding).where(
                    Finding.site == site, func.coalesce(Finding.last_seen_at, Finding.seen_at) < findings_before
                )
            ).rowcount
            # a finding's or escalation's record goes when it is resolved (forget_notifications), not by age:
            # a fault that lasts longer than the retention must not be told again
            notifications = connection.execute(
                delete(Notification).where(
                    Notification.site == site,
                    Notification.sent_at < findings_before,
                    ~Notification.key.startswith("finding:"),
                    ~Notification.key.startswith("escalate:"),
                )
            ).rowcount
            actions = connection.execute(
                delete(Action).where(
                    Action.site == site,
                    Action.planned_at < actions_before,
                    Action.outcome.not_in(("in_flight", "succeeded")),
                )
            ).rowcount
        return {"findings": findings, "notifications": notifications, "actions": actions}

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

    @staticmethod
    def _attempted(site: str, since: datetime) -> tuple[ColumnElement[bool], ...]:
        """Rows that are API calls: escalations (our own maintenance) spend no budget, rate or breaker."""
        return (
            Action.site == site,
            Action.mode == "apply",
            Action.outcome.in_(APPLIED_OUTCOMES),
            Action.kind != "escalate",
            Action.started_at >= since,
        )

    def _applied_query(self, site: str, since: datetime, *where: ColumnElement[bool]) -> Select[tuple[int]]:
        return select(func.count()).select_from(Action).where(*self._attempted(site, since), *where)

    def _applied(self, site: str, since: datetime, *where: ColumnElement[bool]) -> int:
        with self.session() as session:
            return session.scalar(self._applied_query(site, since, *where)) or 0

    def _acted(self, session: Session, site: str, since: datetime) -> list[tuple[str, str, str | None]]:
        query = (
            select(Action.hammer, Action.node_uuid, func.max(Action.node_name))
            .where(*self._attempted(site, since))
            .group_by(Action.hammer, Action.node_uuid)
        )
        return [(h, n, name) for h, n, name in session.execute(query)]


@dataclass(frozen=True)
class Guard:
    """What begin_action checks atomically: the hammer's hourly rate and the fleet breaker (distinct nodes)."""

    per_hour: int
    window_minutes: float
    #: distinct nodes acted on in the window (this one included) -> why the breaker trips, or ""
    verdict: Callable[[int], str]


def describe(acted: list[tuple[str, str, str | None]]) -> str:
    """Who drove the breaker, e.g. "error-resetter on node-001, node-002; clean-failed on node-007"."""
    by_hammer: dict[str, list[str]] = {}
    for hammer, uuid, name in acted:
        names = by_hammer.setdefault(hammer, [])
        if (name or uuid) not in names:
            names.append(name or uuid)
    return "; ".join(
        f"{h} on {', '.join(sorted(names)[:10])}{' ...' if len(names) > 10 else ''}"
        for h, names in sorted(by_hammer.items())
    )
