"""Shared fixtures: a clean environment for every test, real testbeds per session (Ironic alone; Ironic with
Keystone and Neutron) and a real PostgreSQL server per session. Every test is marked by the services it uses."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from hammersmith.config import Replica
from hammersmith.testbed import fleet, lifecycle
from hammersmith.testbed.faults import Injector
from hammersmith.testbed.ironic import Ironic, State, free_port
from hammersmith.testbed.replication import SERVICE as REPLICATION
from hammersmith.testbed.replication import Endpoints, Replication, endpoints

TESTBED_NODES = 30
KEYSTONE_TESTBED_NODES = 10
#: a nova-compute per node (~100 MB each): enough for the full-tier tests to each take nodes of their own (seven
#: keep their faults; the others are healed and released) and one left for the smoke
FULL_TESTBED_NODES = 8
#: fixtures that start a real service, and the marker every test using one (directly or not) gets
SERVICE_MARKERS = {
    "testbed": "integration",
    "keystone_testbed": "integration",
    "full_testbed": "integration",
    "bed": "integration",
    "postgres": "postgres",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the services their fixtures start, so `-m "not integration and not postgres"` is pure."""
    for item in items:
        used = getattr(item, "fixturenames", ())
        for fixture, marker in SERVICE_MARKERS.items():
            if fixture in used:
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's clouds or config."""
    for name in list(os.environ):
        if name.startswith(("OS_", "HAMMERSMITH_CONFIG")):
            monkeypatch.delenv(name)


def _quiet_step(description: str, total: int | None) -> Callable[[int], None]:
    return lambda done: None


@dataclass
class Testbed:
    __test__ = False
    workdir: Path
    state: State

    @cached_property
    def conn(self) -> fleet.Admin:
        """The testbed's admin access (noauth, or Keystone's admin), not hammersmith's account."""
        return fleet.connect(self.state)

    def node(self, name: str) -> dict:
        return self.conn.baremetal.get_node(name).to_dict(computed=False)

    def node_raw(self, name: str) -> dict:
        """The node as the API returns it (snapshot field names)."""
        return self.conn.baremetal.get(f"/nodes/{name}", microversion="1.78").json()


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """One real Ironic (fake-hardware, SQLite) with TESTBED_NODES available nodes, stopped by PID at the end."""
    workdir = tmp_path_factory.mktemp("testbed")
    state = lifecycle.up(workdir, TESTBED_NODES, free_port(), _quiet_step)
    try:
        yield Testbed(workdir, state)
    finally:
        lifecycle.down(workdir)


@pytest.fixture(scope="session")
def keystone_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Ironic and Neutron behind a real Keystone, KEYSTONE_TESTBED_NODES available nodes; clouds.yaml in
    `.workdir` logs in as the `hammersmith` account. Every process is stopped by PID at the end."""
    workdir = tmp_path_factory.mktemp("keystone-testbed")
    state = lifecycle.up(workdir, KEYSTONE_TESTBED_NODES, free_port(), _quiet_step, {"keystone", "neutron"})
    try:
        yield Testbed(workdir, state)
    finally:
        lifecycle.down(workdir)


@pytest.fixture(scope="session")
def full_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """The full tier (`--with full`: MariaDB, RabbitMQ, Keystone, Neutron, Placement, Glance, Nova, Blazar) with
    FULL_TESTBED_NODES nodes, each a reservable Blazar host; one per session, shared by every test module that
    needs Nova or Blazar (each test works on nodes and projects of its own). Stopped by PID at the end."""
    workdir = tmp_path_factory.mktemp("full-testbed")
    state = lifecycle.up(workdir, FULL_TESTBED_NODES, free_port(), _quiet_step, {"full"})
    try:
        yield Testbed(workdir, state)
    finally:
        lifecycle.down(workdir)


@dataclass
class ReplicationBed:
    """The replication tier: Ironic (one node, the fleet the breaker counts) and the MariaDB primary, replica and
    mysqld exporter; `up_seconds` is what starting it took."""

    workdir: Path
    server: Replication
    endpoints: Endpoints
    replica: Replica
    up_seconds: float


@pytest.fixture(scope="session")
def replication_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicationBed]:
    """`testbed up --with replication`, one per session (its tests heal what they break); stopped by PID at the end."""
    workdir = tmp_path_factory.mktemp("replication")
    started = time.monotonic()
    state = lifecycle.up(workdir, 1, free_port(), _quiet_step, {REPLICATION})
    took = time.monotonic() - started
    try:
        found = endpoints(lifecycle.testbed_dir(workdir).resolve(), state)
        assert found is not None
        server = Replication(lifecycle.service_dir(workdir, REPLICATION))
        yield ReplicationBed(workdir, server, found, Replica(**found.replica_config()), took)
    finally:
        lifecycle.down(workdir)


@pytest.fixture
def inj(full_testbed: Testbed) -> Iterator[Injector]:
    """Fault injection into the full tier, as its admin (the testbed's own access, never hammersmith's)."""
    ironic = Ironic(lifecycle.testbed_dir(full_testbed.workdir))
    state = ironic.load_state()
    assert state is not None
    admin = fleet.connect(state)
    try:
        yield Injector(admin, ironic, state)
    finally:
        admin.close()


def hammersmith(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "hammersmith", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="session")
def demo_faults(testbed: Testbed) -> dict[str, list[str]]:
    """The demo scenario, injected once through the CLI; node -> faults."""
    result = hammersmith("testbed", "inject", "--scenario", "demo", "--json", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@contextmanager
def ironic_answers_500(testbed: Testbed) -> Iterator[None]:
    """Make the real Ironic fail its node listing: one row it cannot decode (restored afterwards)."""
    db = Ironic(lifecycle.testbed_dir(testbed.workdir)).db
    with sqlite3.connect(db) as conn:
        (original,) = conn.execute("SELECT properties FROM nodes WHERE name = 'node-030'").fetchone()
        conn.execute("UPDATE nodes SET properties = '{broken' WHERE name = 'node-030'")
    try:
        yield
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE nodes SET properties = ? WHERE name = 'node-030'", (original,))


# -- a real PostgreSQL server ------------------------------------------------------------------------

READY_SECONDS = 30.0
STOP_SECONDS = 15.0


@dataclass
class Postgres:
    """A running PostgreSQL server on 127.0.0.1 that trusts its `postgres` user."""

    port: int

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.fail(
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: run apt-get install -y postgresql"
        )
    return found[-1].parent


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
def postgres() -> Iterator[Postgres]:
    """A fresh PostgreSQL server (the Debian package's binaries), stopped by PID and deleted after the session."""
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
        port = free_port()
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
        yield Postgres(port)
    finally:
        if server is not None:
            _stop(server, data)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def inbox() -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP receiver on 127.0.0.1 for Apprise's json:// notifications."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"json://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()
        server.server_close()
