"""Notices to users: one row per (site, key), previewed (pending), claimed by one sender, then sent or not.

Who sends a notice is decided by one conditional statement, never by reading first: of two agents handed the
same notice at once, exactly one claims it (status `sending`), so a user is never told the same thing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hammersmith.store.ledger import _now, _stored_key
from hammersmith.store.models import NoticeRow, UserNotice

#: a notice in one of these states may be (re)claimed for sending: it was only previewed, or it did not go
CLAIMABLE = ("pending", "failed", "no-recipient")


class NoticesMixin:
    """The notices half of Store; Store provides the engine and the unit-of-work sessions."""

    engine: Engine
    session: Callable[[], AbstractContextManager[Session]]

    def notice(self, site: str, key: str) -> NoticeRow | None:
        query = select(UserNotice).where(UserNotice.site == site, UserNotice.key == _stored_key(key))
        with self.session() as session:
            row = session.scalar(query)
            return None if row is None else NoticeRow.of(row)

    def notices(self, *, site: str | None = None, status: str | None = None, limit: int = 200) -> list[NoticeRow]:
        """Newest first, optionally for one site or in one status."""
        query = select(UserNotice).order_by(UserNotice.created_at.desc(), UserNotice.id.desc()).limit(limit)
        if site is not None:
            query = query.where(UserNotice.site == site)
        if status is not None:
            query = query.where(UserNotice.status == status)
        with self.session() as session:
            return [NoticeRow.of(row) for row in session.scalars(query)]

    def preview_notice(
        self,
        *,
        site: str,
        key: str,
        kind: str,
        subject: str,
        recipients: list[str],
        title: str,
        body: str,
        error: str | None = None,
        action_id: int | None = None,
        now: datetime | None = None,
    ) -> NoticeRow:
        """Record what would be sent; a pending row is refreshed (its lease may have changed), any other is kept."""
        content: dict[str, object] = {"recipients": list(recipients), "title": title, "body": body, "error": error}
        row = UserNotice(
            site=site,
            key=_stored_key(key),
            kind=kind,
            subject=subject,
            status="pending",
            created_at=_now(now),
            sent_at=None,
            action_id=action_id,
            **content,
        )
        if action_id is not None:
            content["action_id"] = action_id
        try:
            with self.session() as session:
                session.add(row)
                session.flush()
                return NoticeRow.of(row)
        except IntegrityError:
            pass  # previewed (or sent) before: the unique key decided
        refresh = (
            update(UserNotice)
            .where(UserNotice.site == site, UserNotice.key == _stored_key(key), UserNotice.status == "pending")
            .values(subject=subject, **content)
        )
        with self.engine.begin() as connection:
            connection.execute(refresh)
        found = self.notice(site, key)
        assert found is not None, "a notice that clashed on its key is there"
        return found

    def claim_notice(
        self,
        *,
        site: str,
        key: str,
        kind: str,
        subject: str,
        action_id: int | None = None,
        now: datetime | None = None,
    ) -> tuple[NoticeRow, bool]:
        """(row, True) for the one caller that may send it now (status `sending`); (row as stored, False) for
        everyone else: it is sent, or another sender holds it."""
        row = UserNotice(
            site=site,
            key=_stored_key(key),
            kind=kind,
            subject=subject,
            recipients=[],
            title="",
            body="",
            status="sending",
            error=None,
            created_at=_now(now),
            sent_at=None,
            action_id=action_id,
        )
        try:
            with self.session() as session:
                session.add(row)
                session.flush()
                return NoticeRow.of(row), True
        except IntegrityError:
            pass
        values: dict[str, object] = {"status": "sending", "error": None}
        if action_id is not None:
            values["action_id"] = action_id
        claim = (
            update(UserNotice)
            .where(UserNotice.site == site, UserNotice.key == _stored_key(key), UserNotice.status.in_(CLAIMABLE))
            .values(**values)
        )
        with self.engine.begin() as connection:
            claimed = connection.execute(claim).rowcount == 1
        found = self.notice(site, key)
        assert found is not None, "a notice that clashed on its key is there"
        return found, claimed

    def finish_notice(
        self,
        *,
        site: str,
        key: str,
        status: str,
        recipients: list[str],
        title: str,
        body: str,
        error: str | None,
        sent_at: datetime | None,
    ) -> NoticeRow:
        """Write how a claimed notice went: sent, failed or no-recipient, with what was sent to whom."""
        done = (
            update(UserNotice)
            .where(UserNotice.site == site, UserNotice.key == _stored_key(key), UserNotice.status == "sending")
            .values(status=status, recipients=list(recipients), title=title, body=body, error=error, sent_at=sent_at)
        )
        with self.engine.begin() as connection:
            connection.execute(done)
        found = self.notice(site, key)
        assert found is not None, "a claimed notice is there"
        return found
