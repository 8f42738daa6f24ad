"""The state database's tables, typed; migrations/versions/ must create exactly this schema."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Double, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware in, UTC-aware out, on every backend (SQLite itself keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Snapshot(Base):
    """One collection run at one site: how long it took, whether every service answered, what it saw."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_seconds: Mapped[float] = mapped_column(Double)
    complete: Mapped[bool]
    incomplete_services: Mapped[list[str]] = mapped_column(JSON)
    requests: Mapped[dict[str, int]] = mapped_column(JSON)
    counts: Mapped[dict[str, int]] = mapped_column(JSON)


@dataclass(frozen=True)
class SnapshotRow:
    """A snapshot as read back: plain data, usable after its session has closed."""

    id: int
    site: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    complete: bool
    incomplete_services: list[str]
    requests: dict[str, int]
    counts: dict[str, int]

    @classmethod
    def of(cls, row: Snapshot) -> SnapshotRow:
        return cls(
            id=row.id,
            site=row.site,
            started_at=row.started_at,
            finished_at=row.finished_at,
            duration_seconds=row.duration_seconds,
            complete=row.complete,
            incomplete_services=list(row.incomplete_services),
            requests=dict(row.requests),
            counts=dict(row.counts),
        )


class Finding(Base):
    """One thing a hammer's detector saw on one node, whether or not anything was done about it."""

    __tablename__ = "findings"
    __table_args__ = (
        Index("ix_findings_site_node_uuid", "site", "node_uuid"),
        Index("ix_findings_seen_at", "seen_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    hammer: Mapped[str] = mapped_column(String(64))
    node_uuid: Mapped[str] = mapped_column(String(64))
    node_name: Mapped[str | None] = mapped_column(String(255))
    summary: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: the same finding seen again updates this instead of adding a row each sweep
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sweep_id: Mapped[int | None]


class Action(Base):
    """The audit ledger: one row per planned, refused, attempted or settled remediation."""

    __tablename__ = "actions"
    __table_args__ = (
        Index("ix_actions_site_node_uuid", "site", "node_uuid"),
        Index("ix_actions_site_hammer_started_at", "site", "hammer", "started_at"),
        Index("ix_actions_site_outcome", "site", "outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    hammer: Mapped[str] = mapped_column(String(64))
    node_uuid: Mapped[str] = mapped_column(String(64))
    node_name: Mapped[str | None] = mapped_column(String(255))
    trigger: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    # none_as_null: "no state recorded" is SQL NULL, not the JSON text 'null'
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    error: Mapped[str | None] = mapped_column(Text)
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sweep_id: Mapped[int | None]
    agent: Mapped[str | None] = mapped_column(String(255))
    #: when the fault was seen gone (outcome fixed) or still there (ineffective)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class ActionRow:
    """A ledger row as read back: plain data, usable after its session has closed."""

    id: int
    site: str
    hammer: str
    node_uuid: str
    node_name: str | None
    trigger: str
    mode: str
    kind: str
    params: dict[str, Any]
    outcome: str
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    error: str | None
    planned_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    sweep_id: int | None
    agent: str | None
    verified_at: datetime | None = None

    @classmethod
    def of(cls, row: Action) -> ActionRow:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings, everything else as stored."""
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


class Breaker(Base):
    """A site's circuit breaker: while open, no hammer applies anything there until a human resets it."""

    __tablename__ = "breakers"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reset_by: Mapped[str | None] = mapped_column(String(255))


@dataclass(frozen=True)
class BreakerRow:
    site: str
    state: str
    reason: str
    opened_at: datetime
    reset_at: datetime | None
    reset_by: str | None

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @classmethod
    def of(cls, row: Breaker) -> BreakerRow:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


class Lock(Base):
    """A lease on one node, so two hammers or agents never act on it at once; expires if its holder dies."""

    __tablename__ = "locks"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


KEY_LENGTH = 255


class Notification(Base):
    """A message already sent; the unique (site, key) makes sending it once a database guarantee."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("site", "key", name="uq_notifications_site_key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Sweep(Base):
    """One detect-and-react pass over a site."""

    __tablename__ = "sweeps"
    __table_args__ = (Index("ix_sweeps_site_started_at", "site", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ok: Mapped[bool]
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)


@dataclass(frozen=True)
class SweepRow:
    id: int
    site: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    summary: dict[str, Any]

    @classmethod
    def of(cls, row: Sweep) -> SweepRow:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


class Incident(Base):
    """One firing of one alert: Alertmanager's (fingerprint, startsAt) is unique, so re-deliveries add nothing."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("fingerprint", "starts_at", name="uq_incidents_fingerprint_starts_at"),
        Index("ix_incidents_status_site", "status", "site"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    alertname: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON)
    node: Mapped[str | None] = mapped_column(String(255))
    hammer: Mapped[str | None] = mapped_column(String(64))
    runbook_url: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    action_id: Mapped[int | None]
    #: set when a person closed it (`hammersmith incidents resolve ID --minutes N --note TEXT`): their time is toil
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    manual_minutes: Mapped[float | None] = mapped_column(Double)
    note: Mapped[str | None] = mapped_column(Text)


class IncidentEvent(Base):
    """One line of an incident's timeline: received, duplicate, resolved, action, no_action, error."""

    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident_id", "incident_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)


class WebhookDelivery(Base):
    """An accepted POST (the alerts the schema accepted), stored before it is answered; processed_at stays NULL
    until its alerts are handled, dead_at is set when it failed `http.delivery_attempts` times."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_processed_at", "processed_at"),
        Index("ix_webhook_deliveries_dead_at", "dead_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: alerts the schema refused: [{"index", "errors": [{"field", "problem"}], "alert": ASCII-escaped JSON text}]
    set_aside: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery that needs a human: dead-lettered, or with alerts set aside."""

    id: int
    received_at: datetime
    processed_at: datetime | None
    attempts: int
    last_error: str | None
    dead_at: datetime | None
    set_aside: list[dict[str, Any]]

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryRow:
        values = {f.name: getattr(row, f.name) for f in fields(cls) if f.name != "set_aside"}
        return cls(**values, set_aside=list(row.set_aside or []))

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class IncidentEventRow:
    at: datetime
    kind: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class IncidentRow:
    """An incident as read back, with its timeline (oldest first)."""

    id: int
    site: str
    alertname: str
    fingerprint: str
    starts_at: datetime
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    node: str | None
    hammer: str | None
    runbook_url: str | None
    opened_at: datetime
    resolved_at: datetime | None
    action_id: int | None
    resolved_by: str | None = None
    manual_minutes: float | None = None
    note: str | None = None
    events: tuple[IncidentEventRow, ...] = ()

    @classmethod
    def of(cls, row: Incident, events: list[IncidentEvent]) -> IncidentRow:
        values = {f.name: getattr(row, f.name) for f in fields(cls) if f.name != "events"}
        return cls(**values, events=tuple(IncidentEventRow(e.at, e.kind, e.detail) for e in events))

    def to_dict(self) -> dict[str, Any]:
        out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items() if k != "events"}
        return {**out, "events": [e.to_dict() for e in self.events]}


NOTICE_STATUSES = ("pending", "sending", "sent", "failed", "no-recipient")


class UserNotice(Base):
    """A notice to a user (a lease's owner): what is (or would be) sent, to whom, and how it went; the unique
    (site, key) makes "told once" a database guarantee."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("site", "key", name="uq_notices_site_key"),
        Index("ix_notices_status_site", "status", "site"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    recipients: Mapped[list[str]] = mapped_column(JSON)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    #: pending (previewed), sending (claimed by one sender), sent, failed, no-recipient
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    action_id: Mapped[int | None]


@dataclass(frozen=True)
class NoticeRow:
    """A notice as read back: plain data, usable after its session has closed."""

    id: int
    site: str
    key: str
    kind: str
    subject: str
    recipients: list[str]
    title: str
    body: str
    status: str
    error: str | None
    created_at: datetime
    sent_at: datetime | None
    action_id: int | None

    @classmethod
    def of(cls, row: UserNotice) -> NoticeRow:
        values = {f.name: getattr(row, f.name) for f in fields(cls) if f.name != "recipients"}
        return cls(**values, recipients=list(row.recipients))

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


class Maintenance(Base):
    """One node's maintenance as hammersmith runs it (or adopted from a human's Ironic maintenance): who, why,
    until when, and the objects it made in the services (a Blazar lease, an Alertmanager silence)."""

    __tablename__ = "maintenances"
    __table_args__ = (Index("ix_maintenances_site_state", "site", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    node_uuid: Mapped[str] = mapped_column(String(64))
    node_name: Mapped[str | None] = mapped_column(String(255))
    #: maint (by `hammersmith maint start`), retire, window (a part-time site's schedule), adopted (a human's)
    kind: Mapped[str] = mapped_column(String(16))
    #: requested, waiting, in-maintenance, returning, done, cancelled
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    ticket: Mapped[str | None] = mapped_column(String(255))
    by: Mapped[str] = mapped_column(String(255))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_id: Mapped[str | None] = mapped_column(String(64))
    silence_id: Mapped[str | None] = mapped_column(String(64))
    #: the last step done, or where it stopped (with `error`)
    step: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Pause(Base):
    """A human's pause of every hammer (hammer "*") or one at a site: findings are still recorded, nothing acts."""

    __tablename__ = "pauses"
    __table_args__ = (Index("ix_pauses_site", "site"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    hammer: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resumed_by: Mapped[str | None] = mapped_column(String(255))


class User(Base):
    """A person who may log in to the dashboard: viewer (reads) or operator (also acts); bcrypt-hashed password."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A logged-in browser: the cookie carries a random token, the store keeps only its SHA-256 (a stolen
    database holds no usable session), with the session's CSRF token and expiry."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_expires_at", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DetectResult(Base):
    """One probe or smoke scenario outcome at a site: the history behind the dashboard and the status page."""

    __tablename__ = "detect_results"
    __table_args__ = (
        Index("ix_detect_results_site_started_at", "site", "started_at"),
        Index("ix_detect_results_site_source_name_started_at", "site", "source", "name", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    #: probe or smoke
    source: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    #: passed, failed or skipped
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seconds: Mapped[float] = mapped_column(Double)
    message: Mapped[str | None] = mapped_column(Text)
    #: the smoke run's CTRF report file, when there is one
    report: Mapped[str | None] = mapped_column(Text)


class StatusPost(Base):
    """What an operator published on the public status page about a site: an incident or a notice, with text."""

    __tablename__ = "status_posts"
    __table_args__ = (Index("ix_status_posts_site_created_at", "site", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    #: degraded, down, maintenance or info
    impact: Mapped[str] = mapped_column(String(16))
    #: ongoing or resolved
    state: Mapped[str] = mapped_column(String(16))
    published_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
