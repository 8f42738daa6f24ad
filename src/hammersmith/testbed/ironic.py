"""Install, configure, start and stop a real Ironic 39 for the testbed.

Ironic lives in its own cached virtualenv (never the project's), runs as the single
all-in-one `ironic` process (the only supported mode with SQLite) on 127.0.0.1: noauth, or
behind the testbed's Keystone with its new-default RBAC.
"""

from __future__ import annotations

import json
import random
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hammersmith.errors import TestbedError
from hammersmith.testbed import keystone, process, venvs

IRONIC_VERSION = "39.0.0"
CLOUD_NAME = "hammersmith-testbed"
SITE_NAME = "testbed"
#: a loopback port nothing listens on: a Neutron or image server that is down
DEAD_ENDPOINT = "http://127.0.0.1:9/"

CONF_TEMPLATE = """\
# written by hammersmith testbed; regenerated on every start
[DEFAULT]
# this testbed's identity: `verify` looks for it in GET /v1/conductors
host = {host}
auth_strategy = {auth_strategy}
# Keystone tier: the `service` role in the service project sees and acts on every node
rbac_service_role_elevated_access = true
rpc_transport = none
debug = false
log_file = {dir}/ironic.log
enabled_hardware_types = fake-hardware
enabled_boot_interfaces = fake
enabled_deploy_interfaces = fake,direct
enabled_power_interfaces = fake
enabled_management_interfaces = fake,noop
enabled_inspect_interfaces = fake,no-inspect
enabled_console_interfaces = fake,no-console
enabled_network_interfaces = noop,flat
enabled_raid_interfaces = fake,no-raid
enabled_bios_interfaces = fake,no-bios
enabled_rescue_interfaces = fake,no-rescue
enabled_storage_interfaces = noop
enabled_vendor_interfaces = fake,no-vendor
enabled_firmware_interfaces = fake,no-firmware
default_deploy_interface = fake
default_network_interface = noop

[api]
host_ip = 127.0.0.1
port = {port}
max_limit = 1000

[database]
connection = sqlite:///{dir}/ironic.sqlite

[dhcp]
dhcp_provider = none

[deploy]
# the direct deploy interface wants an HTTP image server; nothing needs to listen there
http_url = http://127.0.0.1:9/
http_root = {dir}/httpboot

[conductor]
file_url_allowed_paths = {dir}
automated_clean = true
heartbeat_interval = 5
# a node waiting for a deploy ramdisk that never calls back stays stuck, as in production before the timeout
deploy_callback_timeout = 0

[service_catalog]
# the direct deploy interface tells the ramdisk where the API is
auth_type = none
endpoint_override = http://127.0.0.1:{port}

[neutron]
{neutron_auth}connect_retries = 0
status_code_retries = 0

[fake]
deploy_delay = {deploy_delay}
bios_delay = {bios_delay}
inspect_delay = {inspect_delay}
power_delay = {power_delay}
{keystone}"""


def venv_dir() -> Path:
    return venvs.venv_path("ironic", IRONIC_VERSION)


def ensure_venv() -> Path:
    return venvs.ensure("ironic", IRONIC_VERSION)


#: where free ports are looked for: below Linux's ephemeral range (32768-60999), which the kernel gives to outgoing
#: connections. A port from that range, free when picked, can be a full tier's outgoing connection (hundreds, to
#: RabbitMQ, MariaDB, Keystone) by the time its server starts a minute later, and that server's bind then fails.
FREE_PORTS = range(20000, 32768)


def free_port() -> int:
    """A port nothing on 127.0.0.1 holds, outside the ephemeral range (see FREE_PORTS)."""
    for port in random.sample(FREE_PORTS, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise TestbedError(f"no free port on 127.0.0.1 in {FREE_PORTS.start}-{FREE_PORTS.stop - 1} after 200 tries")


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def conductor_name() -> str:
    """A conductor host name no other Ironic has: the testbed's identity, checked before it acts."""
    return f"hammersmith-testbed-{secrets.token_hex(6)}"


@dataclass
class State:
    """What `testbed up` left behind, so status/inject/down work from the same directory."""

    port: int
    pid: int | None = None
    #: Ironic's conductor host name, unique per `up` (see `Ironic.verify`)
    host: str = field(default_factory=conductor_name)
    nodes: int = 0
    faults: dict[str, list[str]] = field(default_factory=dict)
    #: Neutron's provisioning network (`--with neutron`)
    network_id: str | None = None
    #: every Keystone account's password (admin, the services', hammersmith)
    passwords: dict[str, str] = field(default_factory=dict)
    #: each service `testbed up --with` added to Ironic (see lifecycle.SERVICES) -> {"port": ..., "pid": ...}; a
    #: service of several processes (Nova) also keeps "processes": {process name: PID}, "pid" being the first's
    services: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, data: dict[str, Any]) -> State:
        """From testbed.json; one written before the service registry kept keystone_/neutron_ port and pid."""
        for name in ("keystone", "neutron"):
            port, pid = data.pop(f"{name}_port", None), data.pop(f"{name}_pid", None)
            if port:
                data.setdefault("services", {})[name] = {"port": port, "pid": pid}
        return cls(**data)

    def port_of(self, name: str) -> int | None:
        return self.services[name]["port"] if name in self.services else None

    def pid_of(self, name: str) -> int | None:
        return self.services[name]["pid"] if name in self.services else None

    def pids_of(self, name: str) -> dict[str, int | None]:
        """Every recorded process of a service: process name -> PID (one, named as the service, for most)."""
        entry = self.services.get(name, {})
        return dict(entry.get("processes") or {name: entry.get("pid")})

    def set_pid(self, name: str, pid: int | dict[str, int] | None) -> None:
        """Record a service's PID, or each of its processes' (a dict); None forgets them all."""
        entry = self.services[name]
        entry.pop("processes", None)
        if isinstance(pid, dict):
            entry["processes"] = pid
            pid = next(iter(pid.values()))
        entry["pid"] = pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def neutron_url(self) -> str | None:
        return f"http://127.0.0.1:{port}/" if (port := self.port_of("neutron")) else None

    @property
    def auth_url(self) -> str | None:
        return f"http://127.0.0.1:{port}/v3" if (port := self.port_of("keystone")) else None


def _headers(state: State, version: str) -> dict[str, str]:
    """The testbed's own API headers: a microversion and, behind Keystone, a system-scoped admin token."""
    headers = {"X-OpenStack-Ironic-API-Version": version}
    if state.auth_url:
        headers["X-Auth-Token"] = keystone.token(state.auth_url, state.passwords["admin"])
    return headers


class Ironic:
    """One Ironic process with its config, SQLite database and log under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.state_file = self.dir / "testbed.json"
        self.log = self.dir / "ironic.stdout"

    @property
    def db(self) -> Path:
        return self.dir / "ironic.sqlite"

    def load_state(self) -> State | None:
        try:
            return State.load(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None

    def save_state(self, state: State) -> None:
        """Readable by its owner only: it holds the testbed's passwords."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.touch()
        tmp.chmod(0o600)
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self.state_file)

    def _bin(self, name: str) -> str:
        return str(venv_dir() / "bin" / name)

    def write_config(
        self, state: State, deploy_delay: int = 0, bios_delay: int = 0, inspect_delay: int = 0, power_delay: int = 0
    ) -> Path:
        """noauth, or Keystone auth with the `ironic` account. Neutron: from the catalog when Keystone and
        Neutron run, else at its URL (a dead port when none runs)."""
        neutron_auth = "auth_type = none\n"
        keystone_auth = ""
        if state.auth_url:
            password = state.passwords["ironic"]
            neutron_auth = keystone.auth_options(state.auth_url, "ironic", password)
            keystone_auth = "\n" + keystone.authtoken_section(state.auth_url, "ironic", password)
        if not (state.auth_url and state.neutron_url):
            neutron_auth += f"endpoint_override = {state.neutron_url or DEAD_ENDPOINT}\n"
        conf = self.dir / "ironic.conf"
        conf.write_text(
            CONF_TEMPLATE.format(
                dir=self.dir,
                host=state.host,
                port=state.port,
                auth_strategy="keystone" if state.auth_url else "noauth",
                neutron_auth=neutron_auth,
                keystone=keystone_auth,
                deploy_delay=deploy_delay,
                bios_delay=bios_delay,
                inspect_delay=inspect_delay,
                power_delay=power_delay,
            )
        )
        return conf

    def create_schema(self, port: int) -> None:
        """A fresh, empty database: copied from the one cached beside the venv, made once by ironic-dbsync."""
        self.dir.mkdir(parents=True, exist_ok=True)

        def create() -> None:
            conf = self.write_config(State(port=port))
            process.run([self._bin("ironic-dbsync"), "--config-file", str(conf), "create_schema"], "ironic-dbsync")

        venvs.cached_schema(self.db, venv_dir() / "empty-ironic.sqlite", create)

    def start(
        self,
        state: State,
        deploy_delay: int = 0,
        bios_delay: int = 0,
        inspect_delay: int = 0,
        timeout: float = 60.0,
        power_delay: int = 0,
    ) -> None:
        """Start Ironic and wait until the API answers and the conductor has registered fake-hardware."""
        if port_in_use(state.port):
            raise TestbedError(
                f"port {state.port} on 127.0.0.1 is already in use", hint="stop what listens there, or pass --port"
            )
        conf = self.write_config(state, deploy_delay, bios_delay, inspect_delay, power_delay)
        state.pid = process.start([self._bin("ironic"), "--config-file", str(conf)], self.log, self.dir)
        self.save_state(state)
        headers = _headers(state, "1.1")
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=state.url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if not process.alive(state.pid):
                    raise TestbedError("Ironic exited during start-up", hint=process.tail(self.log))
                try:
                    drivers = http.get("/v1/drivers", headers=headers)
                    if drivers.status_code == 200 and any(
                        d["name"] == "fake-hardware" for d in drivers.json()["drivers"]
                    ):
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            else:
                self.stop(state)
                raise TestbedError(f"Ironic did not become ready within {timeout:.0f} s", hint=process.tail(self.log))
        try:  # what answered may be another Ironic that holds the port (ours then can't bind it)
            self.verify(state)
        except TestbedError:
            self.stop(state)
            raise

    def verify(self, state: State) -> None:
        """Refuse (TestbedError) unless the Ironic at `state.url` is the one this testbed started.

        Three facts, all needed: the recorded PID is still our process (`process.owned`); every socket
        listening on the port is held by its process group (Ironic's forked worker holds it); and that
        API lists our unique conductor host name (another Ironic has another database). Not "alive": this
        all-in-one Ironic (rpc_transport none) registers its conductor once and never heartbeats it, so it reads
        as dead 60 s after start.
        """
        refuse = f"the Ironic at {state.url} is not this testbed's"
        hint = "the testbed acts only on the Ironic it started: stop the other one, or 'testbed down' and 'up' again"
        if not process.owned(state.pid, self.dir):
            raise TestbedError(f"{refuse}: PID {state.pid} is no longer the Ironic it started", hint=hint)
        if held := self.foreign_listeners(state):
            raise TestbedError(f"{refuse}: port {state.port} is held by {held}, not by its process group", hint=hint)
        try:
            answer = httpx.get(f"{state.url}/v1/conductors", headers=_headers(state, "1.49"), timeout=10.0)
            answer.raise_for_status()
            hosts = {c["hostname"] for c in answer.json()["conductors"]}
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise TestbedError(f"{refuse}: can't list its conductors ({exc})", hint=hint) from exc
        if state.host not in hosts:
            raise TestbedError(
                f"{refuse}: its conductors are {sorted(hosts)}, this testbed's is {state.host!r}", hint=hint
            )

    def foreign_listeners(self, state: State) -> str:
        """Who listens on the testbed's port outside its Ironic's process group ('' if nobody): that one
        answers the testbed's URL, and ours can't bind it."""
        sockets = process.listeners(state.port)
        foreign = [sorted(pids) for pids in sockets.values() if state.pid not in map(process.group, pids)]
        return "; ".join(f"PID {', '.join(map(str, p))}" if p else "another user's process" for p in foreign)

    def stop(self, state: State, hard: bool = False) -> None:
        """Stop our Ironic by its PID; a recorded PID that is no longer ours is left alone (and forgotten)."""
        if process.owned(state.pid, self.dir):
            process.stop(state.pid, hard=hard)
        state.pid = None
        self.save_state(state)

    def restart(
        self,
        state: State,
        deploy_delay: int = 0,
        bios_delay: int = 0,
        inspect_delay: int = 0,
        hard: bool = False,
        power_delay: int = 0,
    ) -> None:
        """Restart with other fake delays (slow hardware); `hard` is a conductor crash (SIGKILL)."""
        self.stop(state, hard=hard)
        self.start(state, deploy_delay, bios_delay, inspect_delay, power_delay=power_delay)
