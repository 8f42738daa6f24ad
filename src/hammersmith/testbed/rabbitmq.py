"""A real RabbitMQ (Debian package `rabbitmq-server`) for the testbed's full tier, stopped by PID.

Nova's and Blazar's services talk over oslo.messaging RPC, whose only in-process transport
(`fake://`) cannot cross processes. This runs one broker with everything in its own directory
(database, logs, cookie, config), on 127.0.0.1 only, with its own epmd on its own port, so it
neither meets nor stops another Erlang node on the machine.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import time
from pathlib import Path

from hammersmith.errors import TestbedError
from hammersmith.testbed import process
from hammersmith.testbed.ironic import free_port, port_in_use

#: the Debian package's scripts; /usr/sbin's wrappers would switch to the `rabbitmq` user and its /var dirs
SBIN = Path("/usr/lib/rabbitmq/bin")
USER = "hammersmith"
#: what an AMQP 0-9-1 client sends first; a broker answers with a Connection.Start method frame
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
CONNECTION_START = b"\x01\x00\x00"  # frame type 1 (method) on channel 0
RABBITMQ_CONF = """\
# written by hammersmith testbed (the listener's address and port come from the environment)
default_user = {user}
default_pass = {password}
default_vhost = /
log.console = false
log.file.level = info
"""


def greets(port: int, timeout: float = 2.0) -> bool:
    """An AMQP broker listens on 127.0.0.1:port: it answers the protocol header with Connection.Start."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(AMQP_HEADER)
            return conn.recv(len(CONNECTION_START)) == CONNECTION_START
    except OSError:
        return False


class RabbitMQ:
    """One broker (node `rabbit-<random>@localhost`) and its epmd, everything under `directory`.

    It runs as whoever starts it (root too): no `rabbitmq` user, no chown. The epmd's PID is kept in
    `epmd.pid`, so `stop` needs only the broker's PID, as every other testbed service.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.log = self.dir / "rabbitmq.stdout"
        self.port: int | None = None

    def _account(self) -> dict[str, str]:
        return dict(json.loads((self.dir / "account.json").read_text()))

    def prepare(self) -> None:
        """Config, an empty database, a node name no other testbed has and the account's password."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in ("mnesia", "log"):
            shutil.rmtree(self.dir / stale, ignore_errors=True)
        for sub in ("mnesia", "log", "home"):
            (self.dir / sub).mkdir(exist_ok=True)
        account = {"user": USER, "password": secrets.token_urlsafe(18), "node": f"rabbit-{secrets.token_hex(4)}"}
        (self.dir / "account.json").write_text(json.dumps(account))
        (self.dir / "account.json").chmod(0o600)
        (self.dir / "rabbitmq.conf").write_text(RABBITMQ_CONF.format(**account))
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("# no /etc/rabbitmq/rabbitmq-env.conf for this node\n")

    def _env(self, port: int, dist_port: int, epmd_port: int) -> dict[str, str]:
        """The broker's environment; none of the Debian package's /etc or /var paths are used."""
        return {
            "HOME": str(self.dir / "home"),  # the Erlang cookie
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(epmd_port),
            "RABBITMQ_NODENAME": f"{self._account()['node']}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),  # else 20000 + port, on every address
            # distribution on loopback only; never start a system-wide epmd should ours be gone
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false",
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),  # .conf is appended
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.erlpid"),
        }

    def start(self, port: int, timeout: float = 60.0) -> int:
        """Start epmd, then the broker on 127.0.0.1:port; ready once AMQP answers (about 4-5 s)."""
        if not (SBIN / "rabbitmq-server").exists():
            raise TestbedError("rabbitmq-server is not installed", hint="run scripts/setup --test")
        self.stop(None)  # an epmd whose broker died (a crash, then start again) would be left behind
        epmd_port = free_port()
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        epmd_pid = process.start(
            [epmd, "-port", str(epmd_port), "-address", "127.0.0.1"], self.dir / "epmd.log", self.dir
        )
        (self.dir / "epmd.pid").write_text(f"{epmd_pid}\n")
        deadline = time.monotonic() + timeout
        while not port_in_use(epmd_port):
            if not process.alive(epmd_pid) or time.monotonic() > deadline:
                self.stop(None)
                raise TestbedError("epmd did not start", hint=process.tail(self.dir / "epmd.log"))
            time.sleep(0.05)
        env = self._env(port, free_port(), epmd_port)
        pid = process.start([str(SBIN / "rabbitmq-server")], self.log, self.dir, env=env)
        while time.monotonic() < deadline:
            if not process.alive(pid) or not process.alive(epmd_pid):
                self.stop(pid)
                raise TestbedError("RabbitMQ exited during start-up", hint=self._tail())
            if greets(port):
                self.port = port
                return pid
            time.sleep(0.1)
        self.stop(pid)
        raise TestbedError(f"RabbitMQ did not become ready within {timeout:.0f} s", hint=self._tail())

    def _tail(self) -> str:
        logs = sorted((self.dir / "log").glob("*.log"))
        return process.tail(self.log) + ("\n" + process.tail(logs[0]) if logs else "")

    def stop(self, pid: int | None) -> None:
        """SIGTERM to the broker's group (its script turns that into a clean shutdown, ~1 s), then its epmd.

        Both bounded (process.stop escalates to SIGKILL), each only while its PID is still the one started here.
        """
        if process.owned(pid, self.dir):
            process.stop(pid, timeout=30.0)
        record = self.dir / "epmd.pid"
        if record.exists():
            epmd_pid = int(record.read_text())
            if process.owned(epmd_pid, self.dir):
                process.stop(epmd_pid)
            record.unlink()

    @property
    def transport_url(self) -> str:
        """oslo.messaging's URL for this broker, with the testbed's own account (not guest)."""
        if self.port is None:
            raise TestbedError("RabbitMQ was not started")
        account = self._account()
        return f"rabbit://{account['user']}:{account['password']}@127.0.0.1:{self.port}/"
