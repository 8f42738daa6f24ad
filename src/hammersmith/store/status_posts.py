"""What operators publish on the public status page: an incident or a notice about a site, with text.

Each publish and resolve writes its ledger row (who, what) in the same transaction, like a pause: the public page
never shows who published, the ledger always does.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hammersmith.store.ledger import _now, human_act
from hammersmith.store.models import Action, StatusPost

IMPACTS = ("degraded", "down", "maintenance", "info")
STATES = ("ongoing", "resolved")
#: the ledger's hammer column for status posts (a human's act on the whole site, like "pause")
LEDGER_HAMMER = "status"


@dataclass(frozen=True)
class StatusPostRow:
    id: int
    site: str
    title: str
    body: str
    impact: str
    state: str
    published_by: str
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, row: StatusPost) -> StatusPostRow:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    @property
    def ongoing(self) -> bool:
        return self.state == "ongoing"

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


class StatusPostsMixin:
    """The status posts half of Store; Store provides the unit-of-work sessions."""

    session: Callable[[], AbstractContextManager[Session]]

    def publish_status(
        self, site: str, title: str, body: str, impact: str, by: str, now: datetime | None = None
    ) -> StatusPostRow:
        """A new ongoing post; ValueError for an unknown impact or an empty title (the page would show nothing)."""
        if impact not in IMPACTS:
            raise ValueError(f"impact {impact!r}: use one of {', '.join(IMPACTS)}")
        title, body = title.strip(), body.strip()
        if not title:
            raise ValueError("a status post needs a title")
        now = _now(now)
        row = StatusPost(
            site=site,
            title=title,
            body=body,
            impact=impact,
            state="ongoing",
            published_by=by,
            created_at=now,
            updated_at=now,
            resolved_at=None,
        )
        with self.session() as session:
            session.add(row)
            session.flush()
            post = StatusPostRow.of(row)
            session.add(_ledger_row(post, "publish", by, f"published by {by} ({impact}): {title}", now))
        return post

    def resolve_status(self, post_id: int, by: str, now: datetime | None = None) -> StatusPostRow | None:
        """Mark an ongoing post resolved; None if there is no such post. Resolving a resolved post changes nothing
        (and writes no ledger row), so a double click is harmless."""
        now = _now(now)
        with self.session() as session:
            row = session.get(StatusPost, post_id)
            if row is None:
                return None
            if row.state != "ongoing":
                return StatusPostRow.of(row)
            row.state, row.resolved_at, row.updated_at = "resolved", now, now
            session.flush()
            post = StatusPostRow.of(row)
            session.add(_ledger_row(post, "resolve", by, f"resolved by {by}: {post.title}", now))
        return post

    def status_posts(
        self, site: str | None = None, since: datetime | None = None, ongoing_only: bool = False, limit: int = 100
    ) -> list[StatusPostRow]:
        """Newest first. `since`: the posts that mattered at some time since then (changed since, or still
        ongoing), which is what a history of the last N days needs."""
        query = select(StatusPost).order_by(StatusPost.created_at.desc(), StatusPost.id.desc()).limit(limit)
        if site is not None:
            query = query.where(StatusPost.site == site)
        if ongoing_only:
            query = query.where(StatusPost.state == "ongoing")
        if since is not None:
            query = query.where(or_(StatusPost.updated_at >= since, StatusPost.state == "ongoing"))
        with self.session() as session:
            return [StatusPostRow.of(row) for row in session.scalars(query)]


def _ledger_row(post: StatusPostRow, kind: str, by: str, reason: str, now: datetime) -> Action:
    """A post is a human's act on the whole site: one ledger row, hammer "status"."""
    params = {"post": post.id, "title": post.title, "impact": post.impact, "state": post.state}
    return human_act(site=post.site, hammer=LEDGER_HAMMER, subject="*", kind=kind, by=by, reason=reason, now=now,
                     trigger="manual", params=params)  # fmt: skip
