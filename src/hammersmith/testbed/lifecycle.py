"""`testbed up|status|down|inject`: the steps, independent of how the CLI shows progress."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hammersmith.errors import TestbedError
from hammersmith.testbed import blazar, fleet, glance, keystone, neutron, nova, placement, process, replication
from hammersmith.testbed.blazar import BLAZAR_VERSION, Blazar
from hammersmith.testbed.faults import FAULTS, SCENARIOS, Injector
from hammersmith.testbed.glance import GLANCE_VERSION, Glance
from hammersmith.testbed.ironic import (
    CLOUD_NAME,
    IRONIC_VERSION,
    SITE_NAME,
    Ironic,
    State,
    ensure_venv,
    free_port,
    port_in_use,
    venv_dir,
)
from hammersmith.testbed.keystone import KEYSTONE_VERSION, REGION, SERVICE_PROJECT, Keystone
from hammersmith.testbed.mariadb import MariaDB
from hammersmith.testbed.neutron import NEUTRON_VERSION, PHYSNET, Neutron
from hammersmith.testbed.nova import NOVA_VERSION, Nova
from hammersmith.testbed.placement import PLACEMENT_VERSION, Placement
from hammersmith.testbed.rabbitmq import RabbitMQ
from hammersmith.testbed.replication import Replication

MARKER = "# written by 'hammersmith testbed up'"
#: `--with full`: every service of the registry
FULL = "full"
#: the provisioning network's subnet when Nova runs (TEST-NET-2: never routed)
SUBNET = "198.51.100.0/24"
#: Ironic's place in the start order: services below start before it, services above once its nodes are available
IRONIC_ORDER = 100
#: Keystone's accounts whatever else runs: Ironic's and hammersmith's own (the bootstrap admin comes with Keystone)
BASE_ACCOUNTS = {user: keystone.ROLES[user] for user in ("ironic", "hammersmith")}
Step = Callable[[str, int | None], Callable[[int], None]]
"""start a progress step: (description, total) -> advance(completed)"""
Start = Callable[[Path, State, bool], int | dict[str, int]]
"""start a service: (workdir, state, fresh) -> its PID once it answers, or a service of several processes (Nova)
each one's: name -> PID, the first the one `status` shows; fresh: new data, else its data again"""
Stop = Callable[[Path, int | None], None]
"""stop a service's process: (its directory, its recorded PID), only while that PID is still the process started
there; a service of several processes is stopped one call per PID, all at once"""


def testbed_dir(workdir: Path) -> Path:
    return workdir / ".hammersmith" / "testbed"


def service_dir(workdir: Path, name: str) -> Path:
    return testbed_dir(workdir).resolve() / name


def _stop_group(directory: Path, pid: int | None) -> None:
    if process.owned(pid, directory):
        process.stop(pid)


@dataclass(frozen=True)
class Service:
    """One service `testbed up --with` can add to Ironic: what it needs, when and how it starts and stops."""

    #: its name and version, as `up` shows them
    title: str
    #: its place in the start order (see IRONIC_ORDER); `down` stops those above Ironic first (see stop_all)
    order: int
    start: Start
    #: services it can't run without: `--with` adds them
    needs: tuple[str, ...] = ()
    #: fresh only, once it answers and its PID is recorded: what it creates in itself or the others
    setup: Callable[[Path, State], None] | None = None
    stop: Stop = _stop_group
    #: where its process works, under its directory (`process.owned`): mariadbd changes into its datadir
    cwd: str = ""
    #: a process of a service of several that works elsewhere: process name -> its directory under the service's
    #: (the replication tier's two mariadbd each change into a datadir of their own)
    cwds: Mapping[str, str] = field(default_factory=dict)
    #: its URL is <scheme>://127.0.0.1:<port><path>
    scheme: str = "http"
    path: str = ""
    #: installs its own cached venv (once; MariaDB and RabbitMQ are Debian packages): `up` runs every service's at
    #: once before starting any
    install: Callable[[], Path] | None = None
    #: its service type in Keystone's catalog
    catalog: str | None = None
    #: its accounts in Keystone's service project: user -> roles
    accounts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _port(state: State, name: str) -> int:
    """The port of one of the testbed's services; an error if it runs none."""
    port = state.port_of(name)
    if port is None:
        raise TestbedError(f"this testbed runs no {name!r}", hint=f"add it with 'testbed up --with {name}'")
    return port


def service_url(state: State, name: str) -> str | None:
    port = state.port_of(name)
    service = SERVICES[name]
    return f"{service.scheme}://127.0.0.1:{port}{service.path}" if port else None


def database_url(workdir: Path, state: State, name: str) -> str | None:
    """A MariaDB database of its own when the testbed runs MariaDB (it starts before the services), else None:
    the service keeps its SQLite."""
    port = state.port_of("mariadb")
    if port is None:
        return None
    server = MariaDB(service_dir(workdir, "mariadb"))
    server.port = port
    return server.create_database(name)


def accounts(services: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Keystone's accounts in the service project (user -> roles) for a testbed running `services`."""
    return BASE_ACCOUNTS | {user: roles for name in services for user, roles in SERVICES[name].accounts.items()}


def _start_mariadb(workdir: Path, state: State, fresh: bool) -> int:
    server = MariaDB(service_dir(workdir, "mariadb"))
    if fresh:
        server.prepare()
    return server.start(_port(state, "mariadb"))


def _start_rabbitmq(workdir: Path, state: State, fresh: bool) -> int:
    broker = RabbitMQ(service_dir(workdir, "rabbitmq"))
    if fresh:
        broker.prepare()
    return broker.start(_port(state, "rabbitmq"))


def _start_keystone(workdir: Path, state: State, fresh: bool) -> int:
    """A fresh Keystone is bootstrapped with the admin's password (on MariaDB when the testbed runs it);
    `_register` adds the catalog and accounts."""
    server = Keystone(service_dir(workdir, "keystone"))
    if fresh:
        server.prepare(_port(state, "keystone"), state.passwords["admin"], database_url(workdir, state, "keystone"))
    return server.start(_port(state, "keystone"))


def _register(workdir: Path, state: State) -> None:
    """Keystone's catalog (Ironic and every service with an entry) and the accounts the others log in with."""
    assert state.auth_url is not None
    endpoints = {"baremetal": state.url}
    for name in state.services:
        if (service_type := SERVICES[name].catalog) and (url := service_url(state, name)):
            endpoints[service_type] = url
    keystone.register(state.auth_url, state.passwords, endpoints, accounts(state.services))


def _start_neutron(workdir: Path, state: State, fresh: bool) -> int:
    server = Neutron(service_dir(workdir, "neutron"))
    if fresh:
        server.prepare(state.auth_url, state.passwords.get("neutron", ""))
    return server.start(_port(state, "neutron"))


def _provisioning_network(workdir: Path, state: State) -> None:
    """The flat network Ironic's nodes use."""
    admin = fleet.connect(state)
    try:
        network = admin.network.create_network(
            name="provisioning", provider_network_type="flat", provider_physical_network=PHYSNET, shared=True
        )
    finally:
        admin.close()
    state.network_id = network.id


def _behind_keystone(name: str, server: Callable[[Path], Placement | Glance], user: str) -> Start:
    """Placement's or Glance's start: its account, and its own MariaDB database when MariaDB runs."""

    def start(workdir: Path, state: State, fresh: bool) -> int:
        api = server(service_dir(workdir, name))
        if fresh:
            assert state.auth_url is not None
            api.prepare(state.auth_url, state.passwords[user], database_url(workdir, state, name))
        return api.start(_port(state, name))

    return start


def _start_nova(workdir: Path, state: State, fresh: bool) -> dict[str, int]:
    """Fresh: each node its own shard and nova-compute (each node a compute host, as Blazar needs), Nova's three
    MariaDB databases, RabbitMQ's transport URL, the schemas. The API's PID first: the one `status` shows."""
    server = Nova(service_dir(workdir, "nova"))
    if fresh:
        assert state.auth_url is not None
        admin = fleet.connect(state)
        try:
            node_ids = [node.id for node in sorted(admin.baremetal.nodes(), key=lambda node: node.name)]
            nova.assign_shards(admin.baremetal, node_ids, len(node_ids))
        finally:
            admin.close()
        databases = {name: database_url(workdir, state, name) or "" for name in nova.DATABASES}
        broker = RabbitMQ(service_dir(workdir, "rabbitmq"))
        broker.port = _port(state, "rabbitmq")
        server.prepare(state.auth_url, state.passwords, databases, broker.transport_url, len(node_ids))
    pids = server.start(_port(state, "nova"))
    return {"api": pids["api"], **pids}


def _nova_ready(workdir: Path, state: State) -> None:
    """A subnet on the provisioning network (Nova boots only on a network with one; no DHCP agent runs), a flavor
    per resource class and an image, then wait until Nova lists every node as a hypervisor: a listed node can be
    booted."""
    admin = fleet.connect(state)
    try:
        admin.network.create_subnet(network_id=state.network_id, ip_version=4, cidr=SUBNET, enable_dhcp=False)
        nodes = list(admin.baremetal.nodes(details=True))
        nova.flavors_and_image(admin.project, {node.resource_class for node in nodes})
        Nova(service_dir(workdir, "nova")).wait_for_hypervisors(admin.project, len(nodes))
    finally:
        admin.close()


def _start_blazar(workdir: Path, state: State, fresh: bool) -> dict[str, int]:
    """Fresh: its MariaDB database, RabbitMQ's transport URL, the schema. The API's PID first. Started once a
    read answers: the API hands every read to the manager over RPC, and a manager not yet listening holds the
    request until it is (a `testbed start blazar` followed at once by a read got nothing for a minute)."""
    server = Blazar(service_dir(workdir, "blazar"))
    if fresh:
        assert state.auth_url is not None
        broker = RabbitMQ(service_dir(workdir, "rabbitmq"))
        broker.port = _port(state, "rabbitmq")
        database = database_url(workdir, state, "blazar") or ""
        keystone_port = _port(state, "keystone")
        server.prepare(state.auth_url, keystone_port, state.passwords[blazar.USER], database, broker.transport_url)
    pids = server.start(_port(state, "blazar"))
    try:  # its API answers every read through the manager (RPC): ready once the manager answers too
        assert state.auth_url is not None
        conn = keystone.admin(state.auth_url, state.passwords["admin"])
        try:
            blazar.client(conn).get("/os-hosts")
        finally:
            conn.close()
    except BaseException:
        server.stop(pids)
        raise
    return pids


def _blazar_hosts(workdir: Path, state: State) -> None:
    """Every node a reservable Blazar host, its resource class its node type (Nova lists each node as a
    hypervisor of its own compute host by now)."""
    admin = fleet.connect(state)
    try:
        node_types = {n.id: n.resource_class for n in sorted(admin.baremetal.nodes(details=True), key=lambda n: n.name)}
        blazar.enrol_hosts(admin.project, node_types)
    finally:
        admin.close()


def _start_replication(workdir: Path, state: State, fresh: bool) -> dict[str, int]:
    """A MariaDB primary and its replica, and an exporter watching the replica: the service's port is the
    replica's; fresh, the primary and the exporter get free ports of their own, kept beside it (the replica's
    CHANGE MASTER names the primary's port, so a restart keeps them)."""
    server = Replication(service_dir(workdir, replication.SERVICE))
    entry = state.services[replication.SERVICE]
    if fresh:
        server.prepare()
        taken = {state.port, *(service["port"] for service in state.services.values())}
        entry["ports"] = {"primary": _taken_free_port(taken), "exporter": _taken_free_port(taken)}
    return server.start({"replica": entry["port"], **entry["ports"]}, fresh)


#: every service `testbed up --with` can add to Ironic, in start order
SERVICES: dict[str, Service] = {
    "mariadb": Service(
        "MariaDB",
        10,
        _start_mariadb,
        stop=lambda directory, pid: MariaDB(directory).stop(pid),
        cwd="data",
        scheme="mysql",
    ),
    replication.SERVICE: Service(
        "MariaDB primary and replica, mysqld_exporter",
        15,
        _start_replication,
        stop=lambda directory, pid: Replication(directory).stop_one(pid),
        cwds=replication.CWDS,
        scheme="mysql",
    ),
    "rabbitmq": Service(
        "RabbitMQ",
        20,
        _start_rabbitmq,
        stop=lambda directory, pid: RabbitMQ(directory).stop(pid),
        scheme="amqp",
    ),
    "keystone": Service(
        f"Keystone {KEYSTONE_VERSION}", 30, _start_keystone, setup=_register, path="/v3", install=keystone.ensure_venv
    ),
    "neutron": Service(
        f"Neutron {NEUTRON_VERSION}",
        40,
        _start_neutron,
        setup=_provisioning_network,
        install=neutron.ensure_venv,
        path="/",
        catalog="network",
        accounts={"neutron": keystone.ROLES["neutron"]},
    ),
    "placement": Service(
        f"Placement {PLACEMENT_VERSION}",
        50,
        _behind_keystone("placement", Placement, placement.USER),
        install=placement.ensure_venv,
        needs=("keystone",),
        catalog=placement.SERVICE_TYPE,
        accounts={placement.USER: placement.ROLES},
    ),
    "glance": Service(
        f"Glance {GLANCE_VERSION}",
        60,
        _behind_keystone("glance", Glance, glance.USER),
        install=glance.ensure_venv,
        needs=("keystone",),
        catalog=glance.SERVICE_TYPE,
        accounts={glance.USER: glance.ROLES},
    ),
    "nova": Service(
        f"Nova {NOVA_VERSION}",
        110,
        _start_nova,
        install=nova.ensure_venv,
        needs=("keystone", "neutron", "mariadb", "rabbitmq", "placement", "glance"),
        setup=_nova_ready,
        path="/v2.1",
        catalog=nova.SERVICE_TYPE,
        accounts={nova.USER: nova.ROLES},
    ),
    "blazar": Service(
        f"Blazar {BLAZAR_VERSION}",
        120,
        _start_blazar,
        install=blazar.ensure_venv,
        needs=("nova", "mariadb", "rabbitmq"),
        setup=_blazar_hosts,
        path="/v1",
        catalog=blazar.SERVICE_TYPE,
        accounts={blazar.USER: blazar.ROLES},
    ),
}


def known_services(names: Iterable[str]) -> frozenset[str]:
    """The services to add to Ironic (`--with keystone,neutron`, `--with full`), with every one they need;
    an unknown name is an error naming the known ones."""
    wanted = {name.strip() for name in names if name.strip()}
    if FULL in wanted:
        wanted = (wanted - {FULL}) | set(SERVICES)
    unknown = sorted(wanted - set(SERVICES))
    if unknown:
        raise TestbedError(
            f"unknown service {', '.join(map(repr, unknown))} for --with",
            hint=f"known: {', '.join(SERVICES)}; {FULL}: all of them",
        )
    while missing := {need for name in wanted for need in SERVICES[name].needs} - wanted:
        wanted |= missing
    return frozenset(wanted)


def _in_order(services: Iterable[str]) -> list[str]:
    """The services and Ironic (as "ironic") in start order."""
    return sorted([*services, "ironic"], key=lambda name: IRONIC_ORDER if name == "ironic" else SERVICES[name].order)


def _taken_free_port(taken: set[int]) -> int:
    """A free port none of the testbed's other services was given."""
    while (port := free_port()) in taken:
        pass
    taken.add(port)
    return port


#: pip installs at once: each is mostly waiting for the index and unpacking, so two cores keep three busy
INSTALL_WORKERS = 3


def install(services: Iterable[str], step: Step) -> None:
    """Every venv Ironic and the services need that is not cached yet, several at once (a cold full tier's
    seven installs, one after the other, took half of its `up`)."""
    installs = {f"Ironic {IRONIC_VERSION}": ensure_venv} | {
        SERVICES[name].title: SERVICES[name].install for name in services if SERVICES[name].install
    }
    step(f"installing what is not cached of {', '.join(installs)} into {venv_dir().parent}", None)(0)
    with ThreadPoolExecutor(INSTALL_WORKERS) as pool:
        list(pool.map(lambda ensure: ensure(), installs.values()))


def up(workdir: Path, nodes: int, port: int | None, step: Step, services: Iterable[str] = ()) -> State:
    """Install (once), start Ironic (and the `--with` services) on fresh databases, enrol nodes, write the
    client files."""
    services = known_services(services)
    ironic = Ironic(testbed_dir(workdir))
    previous = ironic.load_state()
    if previous and process.owned(previous.pid, ironic.dir):
        raise TestbedError(
            f"a testbed is already running here (PID {previous.pid}, {previous.url})",
            hint="'hammersmith testbed down' first, or use it as it is",
        )
    if previous:  # what an earlier testbed here left running after its Ironic died
        stop_all(ironic, previous)
    install(services, step)
    state = State(port=port or 6385)
    if port is None and port_in_use(state.port):
        state.port = free_port()
    step("creating Ironic's database", None)(0)
    ironic.create_schema(state.port)
    # a new fleet has new node UUIDs: the old ledger, locks and breaker of the testbed site mean nothing
    for stale in (workdir / ".hammersmith").glob("hammersmith.sqlite*"):
        stale.unlink()
    try:
        taken = {state.port}
        # every port first: Keystone's catalog and Ironic's config name services that start after them
        state.services = {name: {"port": _taken_free_port(taken), "pid": None} for name in services}
        if "keystone" in services:
            state.passwords = {user: secrets.token_urlsafe(18) for user in ("admin", *accounts(services))}
        for name in _in_order(services):
            if name == "ironic":
                step(f"starting Ironic on {state.url}", None)(0)
                advance = step(f"enrolling {nodes} nodes and cleaning them to 'available'", nodes)
                shutil.copyfile(_enrolled_fleet(nodes), ironic.db)
                ironic.start(state)  # and verified: it is ours, not another Ironic that took the port
                names = [fleet.node_name(i) for i in range(1, nodes + 1)]
                fleet.wait_for(fleet.connect(state), names, {"available"}, 60, advance)
            else:
                service = SERVICES[name]
                step(f"starting {service.title}", None)(0)
                _start(workdir, state, name, fresh=True)
    except BaseException:
        stop_all(ironic, state)
        raise
    state.nodes = nodes
    ironic.save_state(state)
    write_client_files(workdir, state)
    return state


def _enrolled_fleet(nodes: int) -> Path:
    """A database of `nodes` enrolled nodes cleaned to `available`, kept beside the Ironic venv: every `up` starts
    from a copy (enrolling and cleaning 30 nodes costs 10-15 s, and a test suite starts Ironic about 30 times).

    Made once, by enrolling through the API of a scratch Ironic of its own, stopped cleanly before the copy, so its
    conductor is unregistered and holds no node. Keyed by the fleet module's source: a change to how nodes are
    enrolled makes a new one."""
    digest = hashlib.sha256(Path(fleet.__file__).read_bytes()).hexdigest()[:12]
    template = venv_dir() / f"fleet-{nodes}-{digest}.sqlite"
    if template.exists():
        return template
    with tempfile.TemporaryDirectory(prefix="hammersmith-fleet-") as scratch_dir:
        scratch = Ironic(Path(scratch_dir))
        state = State(port=free_port())
        scratch.create_schema(state.port)
        scratch.start(state)
        try:
            admin = fleet.connect(state)
            fleet.enrol(admin, nodes)
            fleet.settled(admin, nodes)
        finally:
            scratch.stop(state)
        partial = template.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(scratch.db, partial)
        partial.replace(template)  # atomic: a concurrent `up` copies a whole template or makes its own
    return template


def _start(workdir: Path, state: State, name: str, fresh: bool) -> None:
    """Start a service, record its PID at once (so `down` stops it whatever fails next), then its fresh setup."""
    service = SERVICES[name]
    state.set_pid(name, service.start(workdir, state, fresh))
    Ironic(testbed_dir(workdir)).save_state(state)
    if fresh and service.setup:
        service.setup(workdir, state)


def start_service(workdir: Path, name: str) -> State:
    """Start a stopped service again, on its port and with its data (after `stop_service`); a service of several
    processes starts as a whole, so what survives of it is stopped first."""
    ironic, state = running(workdir)
    _port(state, name)
    if not all(process.alive(pid) for pid in state.pids_of(name).values()):
        _stop_services(ironic, state, [name])
        _start(workdir, state, name, fresh=False)
    return state


def stop_service(workdir: Path, name: str) -> State:
    """Stop a service by its PID, keeping its data: a real outage, which `start_service` ends."""
    ironic = Ironic(testbed_dir(workdir))
    state = ironic.load_state()
    if state is None:
        raise TestbedError("no testbed in this directory")
    _port(state, name)
    _stop_services(ironic, state, [name])
    state.set_pid(name, None)
    ironic.save_state(state)
    return state


def set_password(workdir: Path, user: str, password: str) -> None:
    """Change a Keystone account's password, as Keystone's admin.

    Only Keystone's record changes: clouds.yaml and testbed.json keep the testbed's own password,
    so another one makes those credentials wrong, and `state.passwords[user]` makes them right again.
    """
    _, state = running(workdir)
    if not state.auth_url:
        raise TestbedError("this testbed runs no Keystone", hint="testbed up --with keystone")
    keystone.set_password(state.auth_url, state.passwords["admin"], user, password)


def own_processes(ironic: Ironic, state: State) -> dict[str, tuple[int | None, Path]]:
    """Each recorded process -> (PID, the directory it works in), in stop order: the reverse of the start order.
    A process of a service of several is named "service process" ("nova compute-1")."""
    processes: dict[str, tuple[int | None, Path]] = {}
    for name in reversed(_in_order(state.services)):
        if name == "ironic":
            processes["Ironic"] = (state.pid, ironic.dir)
            continue
        for each, pid in state.pids_of(name).items():
            cwd = SERVICES[name].cwds.get(each, SERVICES[name].cwd)
            processes[name if each == name else f"{name} {each}"] = (pid, ironic.dir / name / cwd)
    return processes


def strangers(ironic: Ironic, state: State) -> list[str]:
    """Recorded PIDs that are alive but no longer the process the testbed started (the PID was reused)."""
    return [
        f"{name} PID {pid}"
        for name, (pid, directory) in own_processes(ironic, state).items()
        if process.alive(pid) and not process.owned(pid, directory)
    ]


def stop_all(ironic: Ironic, state: State) -> list[str]:
    """Stop each process by its PID, only while that PID is still the one the testbed started; the state
    forgets every PID. Returns the strangers left alone.

    The services that call Ironic first, then Ironic (it calls the others), then the others; each group at
    once (every stop is a bounded wait: 2 s for a gunicorn, 5 s for RabbitMQ)."""
    left = strangers(ironic, state)
    order = _in_order(state.services)
    after = order.index("ironic")
    _stop_services(ironic, state, order[after + 1 :])
    _stop_group(ironic.dir, state.pid)
    _stop_services(ironic, state, order[:after])
    state.pid = None
    for name in state.services:
        state.set_pid(name, None)
    ironic.save_state(state)
    return left


def _stop_services(ironic: Ironic, state: State, names: list[str]) -> None:
    """Stop every recorded process of these services at once, each only while it is still the one started."""
    stops = [(SERVICES[name].stop, ironic.dir / name, pid) for name in names for pid in state.pids_of(name).values()]
    if stops:
        with ThreadPoolExecutor(len(stops)) as pool:
            list(pool.map(lambda stop: stop[0](stop[1], stop[2]), stops))


def write_client_files(workdir: Path, state: State) -> None:
    """clouds.yaml and hammersmith.yaml in workdir, so later commands need no flags.

    An existing clouds.yaml keeps its other clouds; an operator's own hammersmith.yaml is never
    overwritten (only one this command wrote).
    """
    clouds_file = workdir / "clouds.yaml"
    clouds: dict[str, Any] = {"clouds": {}}
    if clouds_file.exists():
        clouds = yaml.safe_load(clouds_file.read_text()) or {"clouds": {}}
    cloud: dict[str, Any]
    if state.auth_url:  # hammersmith's own account; the endpoints come from the catalog
        auth = {"auth_url": state.auth_url, "username": "hammersmith", "password": state.passwords["hammersmith"]}
        auth |= {"project_name": SERVICE_PROJECT, "user_domain_name": "Default", "project_domain_name": "Default"}
        # v3password: the password login without a version discovery request before it
        cloud = {"auth_type": "v3password", "auth": auth, "region_name": REGION, "identity_api_version": "3"}
    else:
        cloud = {"auth_type": "none", "baremetal_endpoint_override": state.url}
    cloud["baremetal_api_version"] = "1"
    if state.neutron_url and not state.auth_url:
        cloud["network_endpoint_override"] = state.neutron_url
    clouds.setdefault("clouds", {})[CLOUD_NAME] = cloud
    clouds_file.touch()
    clouds_file.chmod(0o600)  # it may hold a password
    clouds_file.write_text(f"{MARKER}\n" + yaml.safe_dump(clouds, sort_keys=False))
    config_file = workdir / "hammersmith.yaml"
    if config_file.exists() and not config_file.read_text().startswith(MARKER):
        return
    site: dict[str, Any] = {"cloud": CLOUD_NAME}
    if endpoints := replication.endpoints(testbed_dir(workdir).resolve(), state):
        site["replicas"] = [endpoints.replica_config()]
    config_file.write_text(
        f"{MARKER}\n"
        "# the local testbed: one site, observe-only; see docs/config.md for every key\n"
        + yaml.safe_dump({"state_dir": ".hammersmith", "sites": {SITE_NAME: site}}, sort_keys=False)
    )


def running(workdir: Path) -> tuple[Ironic, State]:
    ironic = Ironic(testbed_dir(workdir))
    state = ironic.load_state()
    if not state or not process.alive(state.pid):
        raise TestbedError("no testbed is running in this directory", hint="start one with 'hammersmith testbed up'")
    return ironic, state


def status(workdir: Path) -> dict[str, Any]:
    ironic = Ironic(testbed_dir(workdir))
    state = ironic.load_state()
    if not state:
        return {"running": False, "directory": str(ironic.dir)}
    result: dict[str, Any] = {
        "running": process.alive(state.pid),
        "pid": state.pid,
        "url": state.url,
        **{
            name: {
                "url": service_url(state, name),
                "pid": state.pid_of(name),
                "running": all(process.alive(pid) for pid in state.pids_of(name).values()),
                **({"processes": processes} if len(processes := state.pids_of(name)) > 1 else {}),
            }
            if name in state.services
            else None
            for name in SERVICES
        },
        "directory": str(ironic.dir),
        "faults": state.faults,
    }
    if result["running"] and (result["keystone"] is None or result["keystone"]["running"]):
        nodes = fleet.list_nodes(fleet.connect(state))
        result["nodes"] = len(nodes)
        result["provision_states"] = dict(Counter(n["provision_state"] for n in nodes))
    return result


def down(workdir: Path) -> State | None:
    """Stop the testbed's own processes by PID. A recorded PID that is no longer the testbed's, or another
    Ironic holding the testbed's port, is never signalled: `down` stops what is its own, then refuses
    (TestbedError) naming what it left running."""
    ironic = Ironic(testbed_dir(workdir))
    state = ironic.load_state()
    if not state:
        return None
    left = [f"{held} on its port {state.port}"] if state.pid and (held := ironic.foreign_listeners(state)) else []
    left += stop_all(ironic, state)
    if left:
        raise TestbedError(
            "testbed down stopped only its own processes and left running: " + "; ".join(left),
            hint="the testbed never signals a process it did not start; stop those yourself if they are yours",
        )
    return state


def inject(
    workdir: Path,
    fault: str | None = None,
    node: str | None = None,
    count: int = 1,
    combine: str | None = None,
    scenario: str | None = None,
) -> dict[str, list[str]]:
    """Inject a fault (on a named node or K picked ones), or a whole scenario; return node -> faults."""
    ironic, state = running(workdir)
    ironic.verify(state)  # never inject into an Ironic this testbed did not start
    if left := strangers(ironic, state):
        raise TestbedError(
            f"recorded PIDs that are no longer this testbed's: {', '.join(left)}",
            hint="'hammersmith testbed down' stops what is still its own, then 'up' again",
        )
    if state.port_of("neutron") and not process.alive(state.pid_of("neutron")):
        _start(workdir, state, "neutron", fresh=False)  # e.g. after a crash while a fault had it stopped
    injector = Injector(fleet.connect(state), ironic, state)
    before = set(state.faults)
    if scenario:
        if scenario not in SCENARIOS:
            raise TestbedError(f"unknown scenario {scenario!r}", hint=f"known: {', '.join(SCENARIOS)}")
        for name, k, first in SCENARIOS[scenario]:
            injector.inject(name, injector.pick(k), combine=first)
    else:
        for name in (fault, combine):
            if name is not None and name not in FAULTS:
                raise TestbedError(f"unknown fault {name!r}", hint="see 'hammersmith testbed faults'")
        assert fault is not None
        if node and node in state.faults:
            raise TestbedError(f"node {node} already carries {state.faults[node]}")
        injector.inject(fault, [node] if node else injector.targets(fault, count), combine=combine)
    return {n: f for n, f in state.faults.items() if n not in before}
