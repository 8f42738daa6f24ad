"""The store against both backends: migrations, round trips, atomicity, and errors that keep secrets."""

from __future__ import annotations

import socket
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import StatementError

from hammersmith.errors import StoreError
from hammersmith.store import MIGRATIONS, Store, open_store
from hammersmith.store.models import Base, Snapshot

CEST = timezone(timedelta(hours=2))
START = datetime(2026, 5, 9, 14, 0, 0, 123456, tzinfo=CEST)
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def _record(store: Store, site: str = "lab", started_at: datetime = START) -> int:
    return store.record_snapshot(
        site=site,
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=2.5),
        duration_seconds=2.5,
        complete=False,
        incomplete_services=["blazar"],
        requests={"ironic": 3, "nova": 1},
        counts={"nodes": 12, "stuck": 1},
    )


def test_migrations_create_schema_and_are_idempotent(store_url: str) -> None:
    open_store(store_url).close()
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            assert {"snapshots", "alembic_version"} <= set(inspect(conn).get_table_names())
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == HEAD
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        store.close()


def test_snapshot_round_trip(store_url: str) -> None:
    store = open_store(store_url)
    try:
        first = _record(store)
        second = _record(store, started_at=START + timedelta(minutes=5))
        _record(store, site="other", started_at=START + timedelta(minutes=10))

        rows = store.recent_snapshots(site="lab")
        assert [row.id for row in rows] == [second, first]
        row = rows[1]
        assert row.started_at == START and row.started_at.utcoffset() == timedelta(0)
        assert row.finished_at == START + timedelta(seconds=2.5)
        assert (row.duration_seconds, row.complete) == (2.5, False)
        assert row.incomplete_services == ["blazar"]
        assert row.requests == {"ironic": 3, "nova": 1}
        assert row.counts == {"nodes": 12, "stuck": 1}
        assert [r.site for r in store.recent_snapshots(limit=2)] == ["other", "lab"]
    finally:
        store.close()


def test_naive_timestamps_are_refused(store_url: str) -> None:
    store = open_store(store_url)
    try:
        with pytest.raises(StatementError, match="naive datetime"):
            _record(store, started_at=START.replace(tzinfo=None))
        assert store.recent_snapshots() == []
    finally:
        store.close()


def test_failed_session_writes_nothing(store_url: str) -> None:
    store = open_store(store_url)
    try:
        with pytest.raises(RuntimeError, match="mid-write"):
            with store.session() as session:
                session.add(
                    Snapshot(
                        site="lab",
                        started_at=START,
                        finished_at=START,
                        duration_seconds=0.0,
                        complete=True,
                        incomplete_services=[],
                        requests={},
                        counts={},
                    )
                )
                session.flush()
                raise RuntimeError("mid-write")
        assert store.recent_snapshots() == []
    finally:
        store.close()


def test_sqlite_creates_state_dir_and_uses_wal(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "state" / "hammersmith.sqlite"
    state_dir = tmp_path / "state-dir"
    open_store(f"sqlite:///{db}", state_dir=state_dir).close()
    assert state_dir.is_dir()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://admin:hunter2-secret@db.example/state"])
def test_bad_url_raises_store_error_without_password(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(url)
    assert "hunter2-secret" not in f"{caught.value} {caught.value.hint}"
    assert caught.value.hint


def test_unwritable_sqlite_directory_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create the directory"):
        open_store(f"sqlite:///{blocker / 'state' / 'hammersmith.sqlite'}")


def test_unreachable_postgres_raises_store_error_without_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(StoreError) as caught:
            open_store(f"postgresql+psycopg://admin:hunter2-secret@127.0.0.1:{port}/state")
    message = f"{caught.value} {caught.value.hint}"
    assert "hunter2-secret" not in message
    assert f"postgresql+psycopg://admin:***@127.0.0.1:{port}/state" in str(caught.value)
    assert "server is running" in caught.value.hint


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    """Agents started together on a fresh SQLite file must not both create the tables."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    code = f"from hammersmith.store import open_store; open_store({url!r}).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
