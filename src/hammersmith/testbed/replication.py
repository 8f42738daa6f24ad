"""A real MariaDB primary and replica (GTID replication) watched by Debian's prometheus-mysqld-exporter.

The mysql-replication hammer reads a replica's `SHOW SLAVE STATUS` and restarts replication after a lost
connection; that is only worth testing against a real replica whose threads really stop. Both servers are
`mariadb.MariaDB` (their own directories, 127.0.0.1, ports the testbed picks), the replica retries a lost primary
only briefly (`master_retry_count`, `MASTER_CONNECT_RETRY`) so its IO thread stops with the error within seconds,
and each account has only what it needs: `hammersmith_repl` may read replication status and start replication,
the exporter's may read status, neither reads data.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from hammersmith.errors import TestbedError
from hammersmith.testbed import process
from hammersmith.testbed.ironic import State
from hammersmith.testbed.mariadb import MariaDB

#: its name in `testbed up --with` and the testbed's state
SERVICE = "replication"
#: where each of its processes works, under its directory (`process.owned`): mariadbd changes into its datadir
CWDS = {"replica": "replica/data", "primary": "primary/data", "exporter": "exporter"}
#: hammersmith's account on the replica (config `replicas[].user`)
HAMMER_USER = "hammersmith_repl"
#: SHOW SLAVE STATUS needs SLAVE MONITOR and START SLAVE needs REPLICATION SLAVE ADMIN (MariaDB >= 10.5.9)
HAMMER_GRANTS = "SLAVE MONITOR, REPLICATION SLAVE ADMIN"
EXPORTER_USER = "mysqld_exporter"
#: the exporter's documented PROCESS and REPLICATION CLIENT, plus SLAVE MONITOR: on MariaDB >= 10.5.9 REPLICATION
#: CLIENT (now BINLOG MONITOR) no longer shows SHOW SLAVE STATUS, and without it the slave_status collector exports
#: nothing, so the replication alert could never fire
EXPORTER_GRANTS = "PROCESS, REPLICATION CLIENT, SLAVE MONITOR"
#: the primary's account the replica's IO thread logs in with
REPL_USER = "repl"
#: the data replication carries in tests
DATABASE = "hammertest"
TABLE = "events"
#: the replica's IO thread gives up after this many reconnects, MASTER_CONNECT_RETRY seconds apart (MariaDB's
#: defaults, 100000 tries 60 s apart, retry for two months)
RETRY_COUNT = 3
CONNECT_RETRY = 1
_EXPORTER_HINT = "run scripts/setup --test (installs the Debian package prometheus-mysqld-exporter)"

#: a table of a few rows needs no more: about 45 MB of PSS a server instead of 90 MB (the full tier's budget is 3 GB)
_SMALL = """\
innodb_buffer_pool_size = 8M
innodb_log_buffer_size = 2M
aria_pagecache_buffer_size = 1M
key_buffer_size = 1M
max_connections = 20
"""
_PRIMARY_CNF = (
    """
[mysqld]
server_id = 1
log_bin = {dir}/binlog
binlog_format = ROW
"""
    + _SMALL
)
_REPLICA_CNF = (
    """
[mysqld]
server_id = 2
relay_log = {dir}/relay
master_retry_count = {retries}
"""
    + _SMALL
)
_EXPORTER_CNF = """\
[client]
user = {user}
password = {password}
host = 127.0.0.1
port = {port}
"""


@dataclass(frozen=True)
class Endpoints:
    """What a client needs: the replica (the service's port), the primary, hammersmith's account, the exporter."""

    replica_port: int
    primary_port: int
    exporter_port: int
    user: str
    password_file: Path

    @property
    def exporter_url(self) -> str:
        return f"http://127.0.0.1:{self.exporter_port}/metrics"

    @property
    def instance(self) -> str:
        """The exporter's `instance` label as Prometheus scrapes it: alerts name the replica by it."""
        return f"127.0.0.1:{self.exporter_port}"

    def replica_config(self, name: str = "replica") -> dict[str, object]:
        """One entry of a site's `replicas:` in hammersmith.yaml."""
        return {
            "name": name,
            "host": "127.0.0.1",
            "port": self.replica_port,
            "user": self.user,
            "password_file": str(self.password_file),
            "instance": self.instance,
        }


def endpoints(testbed: Path, state: State) -> Endpoints | None:
    """What a client of the testbed's replication needs (None when it runs none); `testbed` is its directory."""
    entry = state.services.get(SERVICE)
    if not entry or "ports" not in entry:
        return None
    return Replication(testbed / SERVICE).endpoints({"replica": entry["port"], **entry["ports"]})


def exporter_binary() -> str:
    path = shutil.which("prometheus-mysqld-exporter") or shutil.which("mysqld_exporter")
    if path is None:
        raise TestbedError("prometheus-mysqld-exporter is not installed", hint=_EXPORTER_HINT)
    return path


class Replication:
    """A primary, a replica and an exporter under `directory` (`primary/`, `replica/`, `exporter/`)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.primary = MariaDB(self.dir / "primary")
        self.replica = MariaDB(self.dir / "replica")
        self.exporter_dir = self.dir / "exporter"
        self.password_file = self.dir / f"{HAMMER_USER}.password"
        self._secrets = self.dir / "accounts.json"

    def endpoints(self, ports: dict[str, int]) -> Endpoints:
        return Endpoints(ports["replica"], ports["primary"], ports["exporter"], HAMMER_USER, self.password_file)

    def prepare(self) -> None:
        """Both data directories, the replication settings, and every account's password (files of mode 0600)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for server, extra in ((self.primary, _PRIMARY_CNF), (self.replica, _REPLICA_CNF)):
            server.prepare()
            with server.cnf.open("a") as cnf:  # a second [mysqld] group: option files merge them
                cnf.write(extra.format(dir=server.dir, retries=RETRY_COUNT))
        passwords = {user: secrets.token_urlsafe(18) for user in (REPL_USER, EXPORTER_USER, HAMMER_USER)}
        _private(self._secrets, json.dumps(passwords))
        _private(self.password_file, passwords[HAMMER_USER] + "\n")

    def _passwords(self) -> dict[str, str]:
        return dict(json.loads(self._secrets.read_text()))

    def start(self, ports: dict[str, int], fresh: bool, timeout: float = 60.0) -> dict[str, int]:
        """Start the primary, the replica (fresh: its accounts and replication) and the exporter; their PIDs, the
        replica's first. Ready once the replica has the test table and the exporter reports `mysql_up 1`."""
        pids: dict[str, int] = {}
        try:
            pids["primary"] = self.primary.start(ports["primary"])
            if fresh:
                self._set_up_primary()
            pids["replica"] = self.replica.start(ports["replica"])
            if fresh:
                self._set_up_replica(ports["primary"])
            tables = f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{DATABASE}'"
            self.wait_for(tables, "1", timeout)  # the test table: replication carried it
            pids["exporter"] = self._start_exporter(ports, timeout)
        except BaseException:
            self.stop(pids)
            raise
        return {"replica": pids["replica"], "primary": pids["primary"], "exporter": pids["exporter"]}

    def _set_up_primary(self) -> None:
        """The replication account (kept out of the binary log: the replica gets no account it was not given),
        then the test database, which replication carries to the replica."""
        password = self._passwords()[REPL_USER]
        self.primary.sql(
            "SET sql_log_bin = 0;"
            f" CREATE USER '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{password}';"
            f" GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1';"
            " SET sql_log_bin = 1;"
            f" CREATE DATABASE `{DATABASE}`;"
            f" CREATE TABLE `{DATABASE}`.`{TABLE}` (id INT PRIMARY KEY, note VARCHAR(200) NOT NULL);"
        )

    def _set_up_replica(self, primary_port: int) -> None:
        """hammersmith's and the exporter's accounts, then replication from the primary's first GTID."""
        passwords = self._passwords()
        self.replica.sql(
            f"CREATE USER '{HAMMER_USER}'@'127.0.0.1' IDENTIFIED BY '{passwords[HAMMER_USER]}';"
            f" GRANT {HAMMER_GRANTS} ON *.* TO '{HAMMER_USER}'@'127.0.0.1';"
            f" CREATE USER '{EXPORTER_USER}'@'127.0.0.1' IDENTIFIED BY '{passwords[EXPORTER_USER]}';"
            f" GRANT {EXPORTER_GRANTS} ON *.* TO '{EXPORTER_USER}'@'127.0.0.1';"
            f" CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {primary_port},"
            f" MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{passwords[REPL_USER]}',"
            f" MASTER_CONNECT_RETRY = {CONNECT_RETRY}, MASTER_USE_GTID = slave_pos;"
            " START SLAVE;"
        )

    def _start_exporter(self, ports: dict[str, int], timeout: float) -> int:
        """The exporter on 127.0.0.1, its credentials in a my.cnf of mode 0600 (not on its command line)."""
        self.exporter_dir.mkdir(parents=True, exist_ok=True)
        cnf = self.exporter_dir / "my.cnf"
        _private(
            cnf,
            _EXPORTER_CNF.format(user=EXPORTER_USER, password=self._passwords()[EXPORTER_USER], port=ports["replica"]),
        )
        argv = [
            exporter_binary(),
            f"--config.my-cnf={cnf}",
            f"--web.listen-address=127.0.0.1:{ports['exporter']}",
            "--collect.slave_status",
        ]
        url = f"http://127.0.0.1:{ports['exporter']}/metrics"
        log = self.exporter_dir / "exporter.log"
        pid = process.start(argv, log, self.exporter_dir)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as http:
            while time.monotonic() < deadline:
                if not process.alive(pid):
                    raise TestbedError("mysqld_exporter exited during start-up", hint=process.tail(log))
                try:
                    if "\nmysql_up 1\n" in http.get(url).text:
                        return pid
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        process.stop(pid)
        raise TestbedError(f"mysqld_exporter did not report mysql_up 1 within {timeout:.0f} s", hint=process.tail(log))

    def wait_for(self, query: str, expected: str, timeout: float = 30.0) -> None:
        """Poll a query on the replica (as its admin) until it answers `expected`: replication is asynchronous."""
        deadline = time.monotonic() + timeout
        answer = ""
        while time.monotonic() < deadline:
            try:
                answer = self.replica.sql(query).strip().splitlines()[-1]
            except TestbedError as exc:
                answer = exc.hint.strip()
            if answer == expected:
                return
            time.sleep(0.2)
        raise TestbedError(f"the replica answered {answer!r}, not {expected!r}, to {query!r} within {timeout:.0f} s")

    def slave_status(self) -> dict[str, str]:
        """SHOW SLAVE STATUS on the replica, as its admin (for the faults; hammersmith reads it as its own user)."""
        lines = self.replica.sql("SHOW SLAVE STATUS").splitlines()
        if len(lines) < 2:
            return {}
        return dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=False))

    def wait_stopped(self, thread: str, timeout: float = 30.0) -> dict[str, str]:
        """Until the replica's `thread` ("IO" or "SQL") has stopped with an error; its SHOW SLAVE STATUS."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.slave_status()
            if status.get(f"Slave_{thread}_Running") == "No" and status.get(f"Last_{thread}_Errno", "0") != "0":
                return status
            if time.monotonic() > deadline:
                running = status.get(f"Slave_{thread}_Running")
                raise TestbedError(f"the replica's {thread} thread is {running!r}, not stopped, after {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self, pids: dict[str, int]) -> None:
        """The exporter, the replica, then the primary (a replica outliving its primary just logs a lost link)."""
        for name in ("exporter", "replica", "primary"):
            self.stop_one(pids.get(name))

    def stop_one(self, pid: int | None) -> None:
        """Stop one of its processes by PID, only while that PID still works in one of its directories."""
        for cwd in CWDS.values():
            directory = self.dir / cwd
            if process.owned(pid, directory):
                process.stop(pid, timeout=30.0)
                return


def _private(path: Path, text: str) -> None:
    """A file only its owner reads (a password), never readable by others even for an instant."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
