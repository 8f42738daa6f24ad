"""The state database: SQLite in state_dir by default, any SQLAlchemy URL (e.g. PostgreSQL) otherwise.

Opening a Store migrates it to the newest schema, so every command sees the tables it expects.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import URL, Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hammersmith.errors import StoreError
from hammersmith.store.dashboard import DashboardMixin
from hammersmith.store.incidents import IncidentsMixin
from hammersmith.store.ledger import LedgerMixin
from hammersmith.store.maintenance import MaintenanceMixin
from hammersmith.store.models import ActionRow, Base, BreakerRow, Snapshot, SnapshotRow, SweepRow
from hammersmith.store.notices import NoticesMixin
from hammersmith.store.pauses import PausesMixin
from hammersmith.store.results import ResultsMixin
from hammersmith.store.status_posts import StatusPostsMixin
from hammersmith.store.users import UsersMixin

__all__ = ["ActionRow", "BreakerRow", "SnapshotRow", "Store", "SweepRow", "open_store"]

MIGRATIONS = Path(__file__).parent / "migrations"
URL_HINT = "set store_url to an SQLAlchemy URL, e.g. sqlite:////var/lib/hammersmith/state.sqlite or postgresql+psycopg://user@host/db"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; busy_timeout makes a busy writer wait instead of fail."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


#: store_url query parameters whose values may be shown; any other (password=, sslpassword=...) could be a secret
SHOWN_QUERY = frozenset({"connect_timeout", "sslmode", "application_name", "target_session_attrs", "mode", "uri"})


def _secrets(url: URL) -> list[str]:
    """What no message may show: the password and every query value not known to be harmless, longest first."""
    found = {str(url.password)} if url.password else set()
    for key, value in url.query.items():
        if key not in SHOWN_QUERY:
            found.update([value] if isinstance(value, str) else value)
    return sorted(found - {""}, key=len, reverse=True)


def masked(url: URL) -> str:
    """The URL as messages show it: `user:***@`, and `***` for every query value that could be a secret."""
    shown = url.set(query={}).render_as_string(hide_password=True)
    query = [
        f"{key}={value if key in SHOWN_QUERY else '***'}"
        for key, values in url.query.items()
        for value in ([values] if isinstance(values, str) else values)
    ]
    return f"{shown}?{'&'.join(query)}" if query else shown


def _reason(exc: BaseException, secrets: list[str]) -> str:
    """The driver's own words, first line only, with the secrets scrubbed in case a driver echoes them."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


MIGRATION_LOCK_ID = 0x68616D6D  # "hamm": PostgreSQL advisory lock key for migrations


@contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive advisory lock on a file beside an SQLite database (no-op for server databases)."""
    if path is None:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Store(
    LedgerMixin,
    IncidentsMixin,
    NoticesMixin,
    MaintenanceMixin,
    PausesMixin,
    ResultsMixin,
    StatusPostsMixin,
    UsersMixin,
    DashboardMixin,
):
    """An engine on the state database, migrated to head on open; the ledger methods come from LedgerMixin."""

    def __init__(self, url: str, state_dir: Path | None = None) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError("store_url is not a valid SQLAlchemy URL", hint=URL_HINT) from None
        shown, secrets = masked(parsed), _secrets(parsed)
        db_file = _sqlite_file(parsed)
        self._lock_file = db_file.with_name(db_file.name + ".migrate-lock") if db_file else None
        try:
            for directory in (state_dir, db_file.parent if db_file else None):
                if directory is not None:
                    directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory for the state database {shown}: {exc.strerror}: {exc.filename}",
                hint="point state_dir (or store_url) at a directory this user may write",
            ) from None
        try:
            # an unreachable PostgreSQL host must fail a cycle in seconds, not after the OS TCP timeout
            if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
                parsed = parsed.update_query_dict({"connect_timeout": "10"})
            self.engine: Engine = create_engine(parsed, pool_pre_ping=True)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(
                f"cannot use store_url {shown}: {_reason(exc, secrets)}",
                hint=f"{URL_HINT}; for PostgreSQL install the driver: pip install 'hammersmith[postgres]'",
            ) from None
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._migrate()
        except (SQLAlchemyError, CommandError, OSError) as exc:
            self.engine.dispose()
            hint = (
                "check that the file's directory exists and this user may write it"
                if db_file
                else "check that the database server is running and reachable, "
                "and the user, password and database in store_url"
            )
            raise StoreError(
                f"cannot open or migrate the state database {shown}: {_reason(exc, secrets)}", hint=hint
            ) from None

    def _migrate(self) -> None:
        """One migrator at a time: agents started together on a fresh database must not race."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with _file_lock(self._lock_file), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed if the block succeeds, rolled back if it raises, so nothing is half-written."""
        with self._sessions.begin() as session:
            yield session

    def _add(self, row: Base) -> int:
        """Insert one row and return its id, committed by the time this returns."""
        with self.session() as session:
            session.add(row)
            session.flush()
            row_id: int = row.id  # type: ignore[attr-defined]
        return row_id

    def record_snapshot(
        self,
        site: str,
        started_at: datetime,
        finished_at: datetime,
        duration_seconds: float,
        complete: bool,
        incomplete_services: list[str],
        requests: dict[str, int],
        counts: dict[str, int],
    ) -> int:
        """Store one collection run; return its id."""
        row = Snapshot(
            site=site,
            started_at=started_at,
            finished_at=finished_at,
            duration_seconds=duration_seconds,
            complete=complete,
            incomplete_services=list(incomplete_services),
            requests=dict(requests),
            counts=dict(counts),
        )
        return self._add(row)

    def recent_snapshots(self, site: str | None = None, limit: int = 20) -> list[SnapshotRow]:
        """Newest first, optionally for one site only."""
        query = select(Snapshot).order_by(Snapshot.started_at.desc(), Snapshot.id.desc()).limit(limit)
        if site is not None:
            query = query.where(Snapshot.site == site)
        with self.session() as session:
            return [SnapshotRow.of(row) for row in session.scalars(query)]

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str, state_dir: Path | None = None) -> Store:
    """Open (creating state_dir and migrating as needed) the state database at url."""
    return Store(url, state_dir)
