"""A real Nova 34 with the Ironic driver (API, conductor, scheduler, one nova-compute per Ironic shard) for the
testbed's full tier.

Users launch onto bare metal through Nova, and the faults operators meet are where Nova, Placement and
Ironic disagree; only a real Nova shows what hammersmith reads there. Upstream Blazar reserves compute
*hosts*, and every Ironic node behind one nova-compute shares its host, so each nova-compute here has its
own `host=` and manages one Ironic `shard`: with a shard per node, each node is a host Blazar can reserve.
Same pattern as Keystone: its own cached virtualenv, 127.0.0.1, every process stopped by PID; the API is
served by gunicorn through a shim (Nova's WSGI module hands oslo.config sys.argv). Needs MariaDB (Nova's
schemas) and RabbitMQ (its processes talk over RPC).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
from openstack.baremetal.v1._proxy import Proxy as BaremetalProxy
from openstack.connection import Connection

from hammersmith.errors import TestbedError
from hammersmith.testbed import keystone, process, venvs

NOVA_VERSION = "34.0.0"
USER = "nova"
SERVICE_TYPE = "compute"
#: its account's roles in the service project: `service` for Ironic's elevated access (every node, whatever
#: its owner), Placement's provider writes, Neutron's port binding fields and token validation; `admin` for
#: Neutron ports in the user's project
ROLES = ("admin", "service")
#: the databases `prepare` needs, by MariaDB name: the API's, the cell's and cell0's (failed boots)
DATABASES = ("nova_api", "nova", "nova_cell0")
#: how often each nova-compute reads its Ironic nodes into Placement (upstream: every 60 s periodic tick; every
#: 15 s, eight computes kept the idle tier at 5 % of the machine, every 30 s at 4 %)
UPDATE_RESOURCES_INTERVAL = 30
#: how long nova-compute trusts its cached provider tree (upstream 300 s): Blazar deletes and re-creates its own
#: provider under a node's when its host is deleted and enrolled again, and builds fail until the cache is re-read
PROVIDER_REFRESH = UPDATE_RESOURCES_INTERVAL
#: how often the scheduler maps new compute hosts into the cell (upstream: never, by hand)
DISCOVER_HOSTS_INTERVAL = 5

#: docs/config.md's override for hammersmith's account: its `service` role lists every project's servers
#: (by default only admin may; anyone else gets 403)
POLICY = (
    '"os_compute_api:servers:detail:get_all_tenants": "rule:context_is_admin or role:service"\n'
    # which node a server is on (undead-instances, idle leases), and the aggregates Blazar keeps (freepool)
    '"os_compute_api:os-extended-server-attributes": "rule:context_is_admin or role:service"\n'
    '"os_compute_api:os-aggregates:index": "rule:context_is_admin or role:service"\n'
    '"os_compute_api:os-aggregates:show": "rule:context_is_admin or role:service"\n'
    '"os_compute_api:os-aggregates:add_host": "rule:context_is_admin or role:service"\n'
    '"os_compute_api:os-aggregates:remove_host": "rule:context_is_admin or role:service"\n'
)
SHIM = """\
import sys
sys.argv = sys.argv[:1]  # oslo.config parses argv; gunicorn's are not Nova's
from nova.wsgi.osapi_compute import application  # noqa: E402,F401
"""
#: what every Nova process shares: the bus, the driver, and how it logs in to the other services
COMMON = """\
# written by hammersmith testbed
[DEFAULT]
host = {host}
transport_url = {transport_url}
compute_driver = ironic.IronicDriver
my_ip = 127.0.0.1
state_path = {state}
instances_path = {state}/instances
log_file = {log}
reserved_host_memory_mb = 0
update_resources_interval = {update_resources_interval}
# periodic tasks from the start, not after a random 0-60 s (the scheduler's host discovery among them)
periodic_fuzzy_delay = 0

[compute]
resource_provider_association_refresh = {provider_refresh}

[oslo_concurrency]
lock_path = {state}/lock

[oslo_messaging_notifications]
driver = noop

[vnc]
enabled = false

[service_user]
send_service_user_token = true
{auth}
[placement]
{auth}
[neutron]
{auth}
[ironic]
{auth}{shard}
[glance]
region_name = {region}
"""
#: the API, conductor and scheduler: databases and token validation (nova-compute has no database access)
CONTROL = """
[api]
auth_strategy = keystone

[wsgi]
api_paste_config = {dir}/api-paste.ini

[api_database]
connection = {api}

[database]
connection = {main}

[conductor]
workers = 1

[scheduler]
workers = 1
discover_hosts_in_cells_interval = {discover_hosts_interval}

[oslo_policy]
policy_file = {dir}/policy.yaml

{authtoken}"""


def venv_dir() -> Path:
    return venvs.venv_path("nova", NOVA_VERSION)


def ensure_venv() -> Path:
    """pymysql: Nova's databases are MariaDB's; gunicorn serves the API."""
    return venvs.ensure("nova", NOVA_VERSION, "gunicorn", "pymysql")


def compute_host(index: int) -> str:
    """The `host` of nova-compute `index` (from 1): Nova's hypervisors and Blazar's hosts are listed under it."""
    return f"hammersmith-compute-{index}"


def shard(index: int) -> str:
    """The Ironic shard nova-compute `index` manages."""
    return f"shard-{index}"


def assign_shards(baremetal: BaremetalProxy, node_ids: list[str], computes: int) -> dict[str, str]:
    """Spread Ironic nodes over the computes' shards, round robin (one node each when they are as many):
    node id -> shard. `baremetal` needs system scope (Ironic lets only a system admin set a shard)."""
    shards = {node_id: shard(i % computes + 1) for i, node_id in enumerate(node_ids)}
    for node_id, name in shards.items():
        baremetal.update_node(node_id, shard=name)
    return shards


#: the 1 MiB raw image the testbed's flavors boot (the fake deploy never reads it)
IMAGE = "hammersmith-raw"


def flavor_name(resource_class: str) -> str:
    return f"baremetal.{resource_class}"


def flavors_and_image(conn: Connection, resource_classes: set[str]) -> None:
    """What an operator gives users to launch on bare metal: a public flavor per resource class (one unit of
    it and no virtual resources) and a public image. `conn`: an admin of Nova and Glance."""
    for resource_class in sorted(resource_classes):
        flavor = conn.compute.create_flavor(name=flavor_name(resource_class), ram=1024, vcpus=1, disk=10)
        conn.compute.create_flavor_extra_specs(
            flavor,
            {
                f"resources:CUSTOM_{resource_class.upper()}": "1",
                "resources:VCPU": "0",
                "resources:MEMORY_MB": "0",
                "resources:DISK_GB": "0",
            },
        )
    conn.image.create_image(
        name=IMAGE, data=bytes(1024 * 1024), disk_format="raw", container_format="bare", visibility="public"
    )


class Nova:
    """Nova's processes with their configs, logs and state under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.computes = sorted(int(p.stem.rsplit("-", 1)[1]) for p in self.dir.glob("nova-compute-*.conf"))

    def _manage(self, *args: str, timeout: float = 300.0) -> None:
        """One nova-manage command on nova.conf; its output goes to nova-manage.log, and its tail into the error."""
        argv = [str(venv_dir() / "bin" / "nova-manage"), "--config-file", str(self.dir / "nova.conf"), *args]
        log = self.dir / "nova-manage.log"
        with log.open("ab") as out:
            out.write(f"$ nova-manage {' '.join(args[:2])}\n".encode())
            out.flush()
            try:
                code = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout
                )
            except subprocess.TimeoutExpired:
                raise TestbedError(
                    f"nova-manage {' '.join(args[:2])} did not finish within {timeout:.0f} s", hint=process.tail(log)
                ) from None
        if code.returncode:
            raise TestbedError(f"nova-manage {' '.join(args[:2])} failed", hint=process.tail(log))

    def prepare(
        self, auth_url: str, passwords: dict[str, str], databases: dict[str, str], transport_url: str, computes: int
    ) -> None:
        """Configs (nova.conf for the API, conductor and scheduler; nova-compute-N.conf, without database
        settings, for each of `computes` services) and the schemas: `databases` maps DATABASES to URLs."""
        ensure_venv()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        (self.dir / "n_wsgi.py").write_text(SHIM)
        (self.dir / "policy.yaml").write_text(POLICY)
        shutil.copyfile(venv_dir() / "etc" / "nova" / "api-paste.ini", self.dir / "api-paste.ini")
        auth = keystone.auth_options(auth_url, USER, passwords[USER])

        def common(host: str, name: str, shard_line: str) -> str:
            state = self.dir / name
            (state / "lock").mkdir(parents=True)
            return COMMON.format(
                host=host,
                transport_url=transport_url,
                state=state,
                log=self.dir / f"nova-{name}.log",
                update_resources_interval=UPDATE_RESOURCES_INTERVAL,
                provider_refresh=PROVIDER_REFRESH,
                auth=auth,
                shard=shard_line,
                region=keystone.REGION,
            )

        # the control services' `host` names only their service records; conductor and scheduler log to
        # nova-conductor.log and nova-scheduler.log (--log-file), the API to nova-api.log
        (self.dir / "nova.conf").write_text(
            common("hammersmith-nova", "api", "")
            + CONTROL.format(
                dir=self.dir,
                api=databases["nova_api"],
                main=databases["nova"],
                discover_hosts_interval=DISCOVER_HOSTS_INTERVAL,
                authtoken=keystone.authtoken_section(auth_url, USER, passwords[USER]),
            )
        )
        for index in range(1, computes + 1):
            (self.dir / f"nova-compute-{index}.conf").write_text(
                common(compute_host(index), f"compute-{index}", f"shard = {shard(index)}\n")
            )
        self.computes = list(range(1, computes + 1))
        self._manage("api_db", "sync")
        self._manage("cell_v2", "map_cell0", "--database_connection", databases["nova_cell0"])
        self._manage("cell_v2", "create_cell", "--name", "cell1")
        self._manage("db", "sync")

    def start(self, api_port: int, timeout: float = 90.0) -> dict[str, int]:
        """Start every process; the PIDs (api, conductor, scheduler, compute-N). The computes start once the API
        answers 401 without a token: by then the conductor listens (a nova-compute that asks earlier waits 10 s
        for its answer). They register their nodes after that: see `wait_for_hypervisors`."""
        bin_dir = venv_dir() / "bin"
        pids: dict[str, int] = {}
        try:
            for name in ("conductor", "scheduler"):
                argv = [str(bin_dir / f"nova-{name}"), "--config-file", str(self.dir / "nova.conf")]
                log = ["--log-file", str(self.dir / f"nova-{name}.log")]
                pids[name] = process.start([*argv, *log], self._out(name), self.dir)
            argv = venvs.gunicorn(venv_dir(), self.dir, api_port, "n_wsgi:application", threads=4, timeout=120)
            pids["api"] = process.start(argv, self._out("api"), self.dir, env={"OS_NOVA_CONFIG_DIR": str(self.dir)})
            self._wait_for_api(api_port, pids, timeout)
            for index in self.computes:
                argv = [str(bin_dir / "nova-compute"), "--config-file", str(self.dir / f"nova-compute-{index}.conf")]
                pids[f"compute-{index}"] = process.start(argv, self._out(f"compute-{index}"), self.dir)
            return pids
        except BaseException:
            self.stop(pids)
            raise

    def _wait_for_api(self, api_port: int, pids: dict[str, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if dead := [name for name, pid in pids.items() if not process.alive(pid)]:
                    raise TestbedError(f"nova {dead[0]} exited during start-up", hint=process.tail(self._out(dead[0])))
                try:
                    # 401: the app is loaded with its Keystone middleware (the version document needs no token)
                    if http.get(f"http://127.0.0.1:{api_port}/v2.1/servers").status_code == 401:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise TestbedError(
            f"Nova's API did not become ready within {timeout:.0f} s", hint=process.tail(self._out("api"))
        )

    def _out(self, name: str) -> Path:
        """A process's stdout and stderr (its own log is nova-NAME.log)."""
        return self.dir / f"nova-{name}.stdout"

    def wait_for_hypervisors(self, conn: Connection, nodes: int, timeout: float = 120.0) -> dict[str, str]:
        """Wait until Nova lists `nodes` Ironic nodes as hypervisors, each with its Placement provider: node id ->
        compute host. Nova lists a node only once the scheduler has mapped its compute host into the cell (every
        DISCOVER_HOSTS_INTERVAL), and its provider may come one Placement update later (two computes racing to
        create one resource class: the loser's provider comes UPDATE_RESOURCES_INTERVAL later); only then can
        the node be booted, and Blazar enrol it (it hangs its own provider under the node's). `conn`: an admin
        of Nova and Placement."""
        deadline = time.monotonic() + timeout
        while True:
            found = {h.name: h.service_details["host"] for h in conn.compute.hypervisors(details=True)}
            providers = {p.name for p in conn.placement.resource_providers()}
            if len(found) >= nodes and set(found) <= providers:
                return found
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"Nova lists {len(found)} of {nodes} Ironic nodes, {len(set(found) & providers)} with their "
                    f"Placement provider, after {timeout:.0f} s",
                    hint="\n".join(process.tail(self.dir / f"nova-compute-{i}.log", 5) for i in self.computes),
                )
            time.sleep(1.0)

    def stop(self, pids: dict[str, int]) -> None:
        """Every process by its PID, at once, each only while it is still the one started here."""
        process.stop_owned(pids.values(), self.dir)
