"""A real MariaDB (Debian package `mariadb-server`) for the testbed's full tier, stopped by PID.

Blazar's migrations fail on SQLite and Nova, Placement and Glance are only tested upstream on MySQL,
so the full tier runs one server for all of them: a plain `mariadbd` with its data, socket and log in
its own directory, on 127.0.0.1 and a port the caller picks (never the system's 3306).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from hammersmith.errors import TestbedError
from hammersmith.testbed import process

#: the one account every service connects as (granted its own databases only)
USER = "hammersmith"
_HINT = "run scripts/setup --test (installs the Debian package mariadb-server)"
MY_CNF = """\
# written by hammersmith testbed
[mysqld]
datadir = {dir}/data
socket = {dir}/mysqld.sock
pid-file = {dir}/mysqld.pid
log-error = {dir}/error.log
bind-address = 127.0.0.1
# mariadbd refuses to run as root unless told to; as anyone else it stays who it is
user = {user}
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
max_connections = 300
# a testbed's databases are tiny: small buffers and logs keep it near 100 MB of RAM and 40 MB of disk
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
performance_schema = off

[client]
socket = {dir}/mysqld.sock
user = {user}
"""


def binary(name: str) -> str:
    """A MariaDB program (mariadbd lives in /usr/sbin, which a non-root PATH may lack)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        raise TestbedError(f"{name} is not installed", hint=_HINT)
    return path


class MariaDB:
    """One mariadbd with my.cnf, data, socket and log under `directory`; its admin only over the socket."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.cnf = self.dir / "my.cnf"
        self.log = self.dir / "mariadbd.stdout"
        self.port: int | None = None
        self._os_user = pwd.getpwuid(os.getuid()).pw_name

    @property
    def data(self) -> Path:
        """Where mariadbd works: it changes into its datadir, so `process.owned` checks this directory."""
        return self.dir / "data"

    def prepare(self) -> None:
        """my.cnf, a fresh data directory (system tables only) and the services' account's password."""
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.data, ignore_errors=True)
        self.cnf.write_text(MY_CNF.format(dir=self.dir, user=self._os_user))
        account = self.dir / "account.json"
        account.write_text(json.dumps({"user": USER, "password": secrets.token_urlsafe(18)}))
        account.chmod(0o600)
        process.run(
            [
                binary("mariadb-install-db"),
                f"--defaults-file={self.cnf}",
                # root, and an account named after whoever runs the testbed, log in over the socket as that
                # system user; no account without a password, none over TCP but the services'
                "--auth-root-authentication-method=socket",
                f"--auth-root-socket-user={self._os_user}",
                "--skip-test-db",
            ],
            "mariadb-install-db",
            timeout=120,
        )

    def start(self, port: int, timeout: float = 30.0) -> int:
        """Start mariadbd on 127.0.0.1:port; ready once it answers over its socket (about 0.2 s)."""
        argv = [binary("mariadbd"), f"--defaults-file={self.cnf}", f"--port={port}"]
        pid = process.start(argv, self.log, self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive(pid):
                raise TestbedError("mariadbd exited during start-up", hint=process.tail(self.dir / "error.log"))
            if self._client("--connect-timeout=2", "-e", "SELECT 1", check=False).returncode == 0:
                self.port = port
                return pid
            time.sleep(0.1)
        process.stop(pid)
        raise TestbedError(f"mariadbd did not become ready within {timeout:.0f} s", hint=process.tail(self.log))

    def stop(self, pid: int | None) -> None:
        """SIGTERM (a clean InnoDB shutdown), bounded, then SIGKILL; only while pid is still this server."""
        if process.owned(pid, self.data):
            process.stop(pid, timeout=30.0)

    def _client(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary("mariadb"), f"--defaults-file={self.cnf}", "--batch", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode:
            raise TestbedError(f"mariadb {' '.join(args)} failed", hint=result.stderr[-2000:])
        return result

    def sql(self, statements: str) -> str:
        """Run SQL as the admin over the socket (the `mariadb` client: no driver in hammersmith's venv); its output."""
        return self._client("-e", statements).stdout

    def create_database(self, name: str) -> str:
        """A new database the services' account may use; its SQLAlchemy URL (the services bring pymysql)."""
        if self.port is None:
            raise TestbedError("MariaDB was not started")
        account = json.loads((self.dir / "account.json").read_text())
        user, password = account["user"], account["password"]
        self.sql(
            f"CREATE DATABASE `{name}`;"
            f" CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{password}';"
            f" GRANT ALL ON `{name}`.* TO '{user}'@'127.0.0.1';"
        )
        return f"mysql+pymysql://{user}:{password}@127.0.0.1:{self.port}/{name}?charset=utf8mb4"
