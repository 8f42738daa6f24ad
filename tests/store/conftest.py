"""Each store test on both supported backends: SQLite, and a database on the real PostgreSQL server that
tests/conftest.py starts once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from hammersmith.store import Store, open_store
from tests.conftest import Postgres

DATABASE = "hammersmith_test"


@pytest.fixture(scope="session")
def postgres_url(postgres: Postgres) -> str:
    """SQLAlchemy URL of the store tests' database on the session's PostgreSQL server."""
    return postgres.create_database(DATABASE)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn; the PostgreSQL database is emptied first so every test starts unmigrated."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'hammersmith.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on each backend, migrated, closed after the test."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()
