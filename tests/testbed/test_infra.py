"""The full tier's MariaDB and RabbitMQ (Debian packages): real servers in the test's directory, stopped by PID."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hammersmith.testbed import process
from hammersmith.testbed.ironic import free_port
from hammersmith.testbed.mariadb import MariaDB
from hammersmith.testbed.rabbitmq import AMQP_HEADER, SBIN, RabbitMQ, greets

pytestmark = pytest.mark.skipif(
    not (shutil.which("mariadbd", path="/usr/sbin:/usr/bin") and (SBIN / "rabbitmq-server").exists()),
    reason="not installed: mariadb-server, rabbitmq-server (scripts/setup --test installs the Debian packages)",
)


def tree(pid: int) -> set[int]:
    """pid and every process descended from it (Erlang's erl_child_setup leaves the group, not the tree)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    found = {pid}
    while more := {child for child, parent in parents.items() if parent in found} - found:
        found |= more
    return found


def rss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
    return total / 1024


def loopback_only(port: int) -> bool:
    """Every socket listening on port is bound to 127.0.0.1 or ::1 (/proc/net/tcp*: hex address, LISTEN=0A)."""
    loopback = {"0100007F", "00000000000000000000000001000000"}
    addresses = [
        row.split()[1].rsplit(":", 1)[0]
        for table in ("/proc/net/tcp", "/proc/net/tcp6")
        for row in Path(table).read_text().splitlines()[1:]
        if row.split()[3] == "0A" and int(row.split()[1].rsplit(":", 1)[1], 16) == port
    ]
    return bool(addresses) and set(addresses) <= loopback


def listening_ports(pids: set[int]) -> set[int]:
    """The TCP ports these processes listen on."""
    inodes = {
        int(row.split()[9]): int(row.split()[1].rsplit(":", 1)[1], 16)
        for table in ("/proc/net/tcp", "/proc/net/tcp6")
        for row in Path(table).read_text().splitlines()[1:]
        if row.split()[3] == "0A"
    }
    ports = set()
    for pid in pids:
        try:
            targets = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        ports |= {inodes[int(t[8:-1])] for t in targets if t.startswith("socket:[") and int(t[8:-1]) in inodes}
    return ports


def client(url: str, sql: str) -> str:
    """Run SQL with the mariadb client over TCP, as the account in a service's database URL."""
    parts = urlsplit(url)
    result = subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            "--batch",
            "--skip-column-names",
            "--host=127.0.0.1",
            f"--port={parts.port}",
            f"--user={parts.username}",
            f"--password={parts.password}",
            parts.path.lstrip("/"),
            "-e",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _method(conn: socket.socket) -> tuple[int, int] | None:
    """The (class, method) of the next AMQP method frame, or None once the broker closed the connection."""
    try:
        header = conn.recv(7, socket.MSG_WAITALL)
    except ConnectionResetError:  # how RabbitMQ refuses a login to a client that did not ask for a Close
        return None
    if len(header) < 7:
        return None
    kind, _, size = struct.unpack(">BHI", header)
    payload = conn.recv(size + 1, socket.MSG_WAITALL)
    assert kind == 1 and payload[-1:] == b"\xce", (kind, payload)
    return struct.unpack(">HH", payload[:4])


def _send(conn: socket.socket, class_method: tuple[int, int], arguments: bytes) -> None:
    payload = struct.pack(">HH", *class_method) + arguments
    conn.sendall(struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce")


def _short(text: str) -> bytes:
    return bytes([len(text)]) + text.encode()


def amqp_open(url: str) -> tuple[int, int] | None:
    """Log in with a transport URL's account (PLAIN) and open its vhost: (10, 41) is Connection.OpenOk."""
    parts = urlsplit(url)
    with socket.create_connection(("127.0.0.1", parts.port or 5672), timeout=10) as conn:
        conn.sendall(AMQP_HEADER)
        assert _method(conn) == (10, 10)  # Connection.Start
        response = f"\0{parts.username}\0{parts.password}".encode()
        # Connection.StartOk: empty client properties, PLAIN, the response, locale
        _send(
            conn,
            (10, 11),
            struct.pack(">I", 0) + _short("PLAIN") + struct.pack(">I", len(response)) + response + _short("en_US"),
        )
        if (reply := _method(conn)) != (10, 30):  # Connection.Tune; a refused login closes the socket
            return reply
        _send(conn, (10, 31), struct.pack(">HIH", 1, 131072, 0))  # Connection.TuneOk: one channel
        _send(conn, (10, 40), _short(parts.path[1:] or "/") + _short("") + b"\x00")  # Connection.Open
        return _method(conn)


def test_mariadb_serves_databases_to_one_account_and_stops_by_pid(tmp_path: Path) -> None:
    server = MariaDB(tmp_path / "mysql")
    began = time.monotonic()
    server.prepare()
    prepared = time.monotonic()
    port = free_port()
    pid = server.start(port)
    started = time.monotonic()
    try:
        nova, blazar = server.create_database("nova"), server.create_database("blazar")
        password = urlsplit(nova).password
        assert password and len(password) >= 20
        assert nova == f"mysql+pymysql://hammersmith:{password}@127.0.0.1:{port}/nova?charset=utf8mb4"
        assert blazar == nova.replace("/nova?", "/blazar?")

        client(
            nova, "CREATE TABLE instances (id INT PRIMARY KEY, name VARCHAR(64)); INSERT INTO instances VALUES (1, 'ä')"
        )
        assert client(nova, "SELECT name FROM instances") == "ä\n"
        # the account sees its own databases only; root is reachable over the socket alone
        assert client(blazar, "SHOW DATABASES").split() == ["blazar", "information_schema", "nova"]
        assert "utf8mb4" in server.sql("SELECT @@character_set_server")
        with pytest.raises(AssertionError, match="Access denied for user 'root'"):
            client(f"mysql://root:@127.0.0.1:{port}/mysql", "SELECT 1")
        assert loopback_only(port)
        assert listening_ports(tree(pid)) == {port}
        group = tree(pid)
        print(
            f"\nMariaDB: prepare {prepared - began:.1f} s, start {started - prepared:.2f} s, "
            f"RSS {rss_mb(group):.0f} MB ({len(group)} processes)"
        )
        MariaDB(tmp_path / "other").stop(pid)  # not that directory's server: left alone
        assert process.alive(pid)
    finally:
        server.stop(pid)
    assert not any(process.alive(p) for p in group)
    assert not process.listeners(port)

    # back after an outage (what stop_service/start_service do): the same port, account and data
    pid = server.start(port)
    try:
        assert client(nova, "SELECT name FROM instances") == "ä\n"
    finally:
        server.stop(pid)
    assert not process.alive(pid)


def test_rabbitmq_accepts_its_account_only_and_stops_with_its_epmd(tmp_path: Path) -> None:
    broker = RabbitMQ(tmp_path / "rabbit")
    broker.prepare()
    port = free_port()
    began = time.monotonic()
    pid = broker.start(port)
    started = time.monotonic()
    epmd = int((broker.dir / "epmd.pid").read_text())
    try:
        url = broker.transport_url
        assert url.startswith("rabbit://hammersmith:") and url.endswith(f"@127.0.0.1:{port}/")
        assert amqp_open(url) == (10, 41)  # Connection.OpenOk on vhost /
        assert amqp_open(f"rabbit://guest:guest@127.0.0.1:{port}/") is None  # no guest account
        group = tree(pid) | {epmd}
        ports = listening_ports(group)
        assert port in ports and len(ports) == 3, ports  # AMQP, distribution, epmd
        assert all(loopback_only(p) for p in ports)
        assert (broker.dir / "home" / ".erlang.cookie").exists()
        print(
            f"\nRabbitMQ: start {started - began:.1f} s, RSS {rss_mb(group):.0f} MB ({len(group)} processes)",
        )
        RabbitMQ(tmp_path / "other").stop(pid)  # not that directory's broker: left alone
        assert greets(port)
    finally:
        stopping = time.monotonic()
        broker.stop(pid)
    print(f"RabbitMQ: stop {time.monotonic() - stopping:.1f} s")
    assert not any(process.alive(p) for p in group)
    assert not any(process.listeners(p) for p in ports)
    assert not (broker.dir / "epmd.pid").exists()


def test_two_testbeds_run_side_by_side_and_a_crashed_broker_starts_again(tmp_path: Path) -> None:
    """Parallel sessions: each server on its own ports (and epmd, node name); one going down leaves the other."""
    databases = [MariaDB(tmp_path / name / "mysql") for name in "ab"]
    brokers = [RabbitMQ(tmp_path / name / "rabbit") for name in "ab"]
    ports = [free_port() for _ in range(4)]
    started: dict[MariaDB | RabbitMQ, int] = {}
    try:
        for server, port in zip((*databases, *brokers), ports, strict=True):
            server.prepare()
            started[server] = server.start(port)
        urls = [db.create_database("glance") for db in databases]
        for url in urls:
            client(url, "CREATE TABLE images (id INT)")
        assert urls[0] != urls[1] and brokers[0].transport_url != brokers[1].transport_url
        everything = set().union(*(tree(pid) for pid in started.values()))

        databases[0].stop(started.pop(databases[0]))
        # a crash: the broker's group killed, its epmd left running
        process.stop(started.pop(brokers[0]), hard=True)
        stale_epmd = int((brokers[0].dir / "epmd.pid").read_text())
        assert process.alive(stale_epmd)
        assert client(urls[1], "SELECT COUNT(*) FROM images") == "0\n"
        assert amqp_open(brokers[1].transport_url) == (10, 41)

        started[brokers[0]] = brokers[0].start(ports[2])  # the same node, account and data
        assert not process.alive(stale_epmd)
        assert amqp_open(brokers[0].transport_url) == (10, 41)
        everything |= tree(started[brokers[0]]) | {stale_epmd}
        everything |= {int((broker.dir / "epmd.pid").read_text()) for broker in brokers}
    finally:
        for server, pid in started.items():
            server.stop(pid)
    assert not any(process.alive(pid) for pid in everything)
    assert not any(process.listeners(port) for port in ports)
