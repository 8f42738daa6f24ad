"""A real, throwaway PostgreSQL server for the store tests, so both supported backends are exercised."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine

from hammersmith.store import Store, open_store

DATABASE = "hammersmith_test"
READY_SECONDS = 30.0
STOP_SECONDS = 15.0


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.fail(
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: run apt-get install -y postgresql"
        )
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; as anyone else it runs as is."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(server: subprocess.Popen[bytes], data: Path) -> None:
    """Fast shutdown of the postmaster by its PID (runuser is only its parent), bounded, then SIGKILL."""
    pid_file = data / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else server.pid
    if _alive(postmaster):
        os.kill(postmaster, signal.SIGINT)
    deadline = time.monotonic() + STOP_SECONDS
    while _alive(postmaster) and time.monotonic() < deadline:
        server.poll()
        time.sleep(0.1)
    if _alive(postmaster):
        os.kill(postmaster, signal.SIGKILL)
    try:
        server.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)  # the session we started for it, led by our child's PID
        server.wait(timeout=STOP_SECONDS)


def _wait_ready(server: subprocess.Popen[bytes], conninfo: str, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while True:
        if server.poll() is not None:
            pytest.fail(f"postgres exited with {server.returncode}:\n{_tail(log)}")
        try:
            with psycopg.connect(conninfo, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                pytest.fail(f"postgres not ready after {READY_SECONDS:.0f} s:\n{_tail(log)}")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a database on a fresh PostgreSQL server, stopped and deleted after the session."""
    pg_bin = _pg_bin()
    tmp = Path(tempfile.mkdtemp(prefix="hammersmith-pg-"))
    data, sockets, log = tmp / "data", tmp / "sockets", tmp / "postgres.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (tmp, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    server: subprocess.Popen[bytes] | None = None
    try:
        initdb = subprocess.run(
            _as_postgres(
                [
                    str(pg_bin / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--auth-local=trust",
                    "--auth-host=trust",
                ]
            ),
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if initdb.returncode != 0:
            pytest.fail(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}")
        port = _free_port()
        with log.open("wb") as out:
            server = subprocess.Popen(
                _as_postgres(
                    [
                        str(pg_bin / "postgres"),
                        "-D",
                        str(data),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-k",
                        str(sockets),
                        "-c",
                        "fsync=off",
                        "-c",
                        "full_page_writes=off",
                    ]
                ),
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        conninfo = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        _wait_ready(server, conninfo, log)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        if server is not None:
            _stop(server, data)
        shutil.rmtree(tmp, ignore_errors=True)


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
