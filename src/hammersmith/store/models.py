"""The state database's tables, typed; migrations/versions/ must create exactly this schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Dialect, Double, String
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
