"""A real Blazar 18 (API and manager, `physical:host` and `virtual:floatingip` plugins) for the testbed's full tier.

Users of a reservation testbed reserve bare-metal nodes through Blazar, and most of what operators fix
sits where Blazar, Nova and Ironic disagree; only a real Blazar shows what hammersmith reads there and
lets the safety layer be tested against real leases. Blazar reserves Nova compute *hosts*; the testbed's
Nova gives every Ironic node its own nova-compute (and so its own host), and each node is enrolled in
Blazar by its UUID (the hypervisor name) with a `node_type`. Needs MariaDB (Blazar's migrations and
lease creation fail on SQLite) and RabbitMQ (API and manager talk over RPC). Same pattern as the other
services: its own cached virtualenv, 127.0.0.1, every process stopped by PID, the API served by
gunicorn (Blazar's WSGI module reads its config through OS_BLAZAR_CONFIG_DIR, with an empty argv).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keystoneauth1 import adapter as ks_adapter
from openstack.connection import Connection

from hammersmith.errors import TestbedError
from hammersmith.testbed import keystone, process, venvs

BLAZAR_VERSION = "18.0.0"
USER = "blazar"
SERVICE_TYPE = "reservation"
#: `admin` in the service project: Blazar acts on users' trusts and moves hosts between Nova aggregates
ROLES = ("admin", "service")
#: how often the manager asks Nova about its hosts' compute services (upstream default: 60 s)
POLLING_INTERVAL = 10
#: Nova's aggregate of hosts no lease holds (Blazar's `aggregate_freepool_name`)
FREEPOOL = "freepool"

#: docs/config.md's override for hammersmith's account: Blazar has no rule for reading every project's leases
#: (and hosts) but `admin`, so its `service` role is made a Blazar admin
POLICY = '"admin": "is_admin:True or role:admin or role:service"\n'
BLAZAR_CONF = """\
# written by hammersmith testbed
[DEFAULT]
host = 127.0.0.1
transport_url = {transport_url}
os_auth_host = 127.0.0.1
os_auth_port = {keystone_port}
os_auth_protocol = http
os_auth_version = v3
os_admin_username = {user}
os_admin_password = {password}
os_admin_project_name = {project}
os_region_name = {region}
log_file = {dir}/blazar-{{name}}.log

[manager]
plugins = physical.host.plugin,virtual.floatingip.plugin

[nova]
aggregate_freepool_name = {freepool}

[physical:host]
# Blazar's own health check of its hosts (as production sites run it): a host whose nova-compute is down or
# disabled is made not reservable, and reservable again when it is back
enable_polling_monitor = true
polling_interval = {polling_interval}

[database]
connection = {database_url}

[oslo_messaging_notifications]
driver = noop

[oslo_policy]
policy_file = {dir}/policy.yaml

{authtoken}"""


def venv_dir() -> Path:
    return venvs.venv_path("blazar", BLAZAR_VERSION)


def ensure_venv() -> Path:
    """pymysql: Blazar's database is MariaDB's; gunicorn serves the API."""
    return venvs.ensure("blazar", BLAZAR_VERSION, "gunicorn", "pymysql")


class Blazar:
    """Blazar's API and manager with their config and logs under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()

    def _conf(self, name: str) -> Path:
        """One config per process (the same but for its log file): oslo.log takes one `log_file`."""
        return self.dir / name / "blazar.conf"

    def prepare(self, auth_url: str, keystone_port: int, password: str, database_url: str, transport_url: str) -> None:
        """Configs for the API and the manager, and the schema (`blazar-db-manage upgrade head`, on MariaDB)."""
        ensure_venv()
        shutil.rmtree(self.dir, ignore_errors=True)
        text = BLAZAR_CONF.format(
            transport_url=transport_url,
            keystone_port=keystone_port,
            user=USER,
            password=password,
            project=keystone.SERVICE_PROJECT,
            region=keystone.REGION,
            dir=self.dir,
            freepool=FREEPOOL,
            polling_interval=POLLING_INTERVAL,
            database_url=database_url,
            authtoken=keystone.authtoken_section(auth_url, USER, password),
        )
        (self.dir / "policy.yaml").parent.mkdir(parents=True)
        (self.dir / "policy.yaml").write_text(POLICY)
        for name in ("api", "manager"):
            self._conf(name).parent.mkdir(parents=True)
            self._conf(name).write_text(text.format(name=name))
        manage = [str(venv_dir() / "bin" / "blazar-db-manage"), "--config-file", str(self._conf("manager"))]
        process.run([*manage, "upgrade", "head"], "blazar-db-manage upgrade head")

    def start(self, port: int, timeout: float = 60.0) -> dict[str, int]:
        """The manager, then the API once it answers 401 without a token: the PIDs (api, manager)."""
        manager = [str(venv_dir() / "bin" / "blazar-manager"), "--config-file", str(self._conf("manager"))]
        pids = {"manager": process.start(manager, self.dir / "blazar-manager.stdout", self.dir)}
        try:
            env = {"OS_BLAZAR_CONFIG_DIR": str(self._conf("api").parent)}
            argv = venvs.gunicorn(venv_dir(), self.dir, port, "blazar.wsgi.api:application", threads=4, timeout=60)
            url = f"http://127.0.0.1:{port}/v1/leases"
            pids["api"] = process.serve(
                "Blazar", argv, self.dir / "blazar-api.stdout", self.dir, env, url, (401,), timeout
            )
        except BaseException:
            self.stop(pids)
            raise
        if not process.alive(pids["manager"]):
            self.stop(pids)
            log = self.dir / "blazar-manager.log"
            raise TestbedError("blazar-manager exited during start-up", hint=process.tail(log))
        return {"api": pids["api"], "manager": pids["manager"]}

    def stop(self, pids: dict[str, int]) -> None:
        """Every process by its PID, at once, each only while it is still the one started here."""
        process.stop_owned(pids.values(), self.dir)


def client(conn: Connection) -> ks_adapter.Adapter:
    """Blazar's API through an SDK connection's session (openstacksdk has no Blazar proxy)."""
    return ks_adapter.Adapter(conn.session, service_type=SERVICE_TYPE, interface="public", region_name=keystone.REGION)


def enrol_hosts(admin: Connection, node_types: dict[str, str]) -> list[dict[str, Any]]:
    """The free pool aggregate, then every node as a reservable host: by its UUID (Nova's hypervisor name), with
    its `node_type` (node id -> type; an extra capability leases select on). `admin`: a project admin of Nova
    and Blazar."""
    admin.compute.create_aggregate(name=FREEPOOL)
    api = client(admin)
    return [
        api.post("/os-hosts", json={"name": node_id, "node_type": node_type}).json()["host"]
        for node_id, node_type in node_types.items()
    ]


def lease_body(
    name: str, node_type: str, start: datetime | None = None, hours: float = 1.0, node: str | None = None
) -> dict[str, Any]:
    """A `physical:host` lease of one host of `node_type` (or the node with UUID `node`) from `start` (UTC; None:
    now) for `hours`."""
    begins = start or datetime.now(UTC)
    return {
        "name": name,
        "start_date": begins.strftime("%Y-%m-%d %H:%M") if start else "now",
        "end_date": (begins + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M"),
        "reservations": [
            {
                "resource_type": "physical:host",
                "min": 1,
                "max": 1,
                "hypervisor_properties": json.dumps(["=", "$hypervisor_hostname", node]) if node else "",
                "resource_properties": json.dumps(["=", "$node_type", node_type]),
            }
        ],
        "events": [],
    }
