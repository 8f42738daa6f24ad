"""`testbed up|status|down|inject`: the steps, independent of how the CLI shows progress."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from hammersmith.errors import TestbedError
from hammersmith.testbed import fleet, keystone, process
from hammersmith.testbed.faults import FAULTS, SCENARIOS, Injector
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
from hammersmith.testbed.neutron import NEUTRON_VERSION, PHYSNET, Neutron

MARKER = "# written by 'hammersmith testbed up'"
#: what `testbed up --with` can add to Ironic
SERVICES = ("keystone", "neutron")
#: Keystone's accounts (the bootstrap admin, the services', hammersmith's own)
ACCOUNTS = ("admin", "ironic", "neutron", "hammersmith")
Step = Callable[[str, int | None], Callable[[int], None]]
"""start a progress step: (description, total) -> advance(completed)"""


def testbed_dir(workdir: Path) -> Path:
    return workdir / ".hammersmith" / "testbed"


def known_services(names: Iterable[str]) -> frozenset[str]:
    """The services to add to Ironic (`--with keystone,neutron`); an unknown one is an error naming the known ones."""
    names = frozenset(name.strip() for name in names if name.strip())
    unknown = sorted(names - set(SERVICES))
    if unknown:
        raise TestbedError(
            f"unknown service {', '.join(map(repr, unknown))} for --with", hint=f"known: {', '.join(SERVICES)}"
        )
    return names


def up(workdir: Path, nodes: int, port: int | None, step: Step, services: Iterable[str] = ()) -> State:
    """Install (once), start Ironic (and Keystone, Neutron) on fresh databases, enrol nodes, write the client files."""
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
    step(f"installing Ironic {IRONIC_VERSION} into {venv_dir()} (first run only)", None)(0)
    ensure_venv()
    state = State(port=port or 6385)
    if port is None and port_in_use(state.port):
        state.port = free_port()
    step("creating Ironic's database", None)(0)
    ironic.create_schema(state.port)
    # a new fleet has new node UUIDs: the old ledger, locks and breaker of the testbed site mean nothing
    for stale in (workdir / ".hammersmith").glob("hammersmith.sqlite*"):
        stale.unlink()
    try:
        if "neutron" in services:
            state.neutron_port = free_port()
        if "keystone" in services:
            step(f"installing and starting Keystone {KEYSTONE_VERSION} (first run installs it)", None)(0)
            start_keystone(workdir, state)
        if "neutron" in services:
            step(f"installing and starting Neutron {NEUTRON_VERSION} (first run installs it)", None)(0)
            start_neutron(workdir, state, fresh=True)
        step(f"starting Ironic on {state.url}", None)(0)
        ironic.start(state)  # and verified: it is ours, not another Ironic that took the port
        advance = step(f"enrolling {nodes} nodes and cleaning them to 'available'", nodes)
        fleet.enrol(fleet.connect(state), nodes, advance)
    except BaseException:
        stop_all(ironic, state)
        raise
    state.nodes = nodes
    ironic.save_state(state)
    write_client_files(workdir, state)
    return state


def start_keystone(workdir: Path, state: State) -> None:
    """A fresh Keystone with the catalog and the accounts (new passwords) the others log in with."""
    server = Keystone(testbed_dir(workdir) / "keystone")
    state.keystone_port = free_port()
    state.passwords = {name: secrets.token_urlsafe(18) for name in ACCOUNTS}
    server.prepare(state.keystone_port, state.passwords["admin"])
    state.keystone_pid = server.start(state.keystone_port)
    Ironic(testbed_dir(workdir)).save_state(state)
    assert state.auth_url is not None
    endpoints = {"baremetal": state.url, **({"network": state.neutron_url} if state.neutron_url else {})}
    keystone.register(state.auth_url, state.passwords, endpoints)


def start_neutron(workdir: Path, state: State, fresh: bool = False) -> None:
    """Start the testbed's Neutron; `fresh`: on a new database, with the flat network Ironic's nodes use."""
    server = Neutron(testbed_dir(workdir) / "neutron")
    assert state.neutron_port is not None
    if fresh:
        server.prepare(state.auth_url, state.passwords.get("neutron", ""))
    state.neutron_pid = server.start(state.neutron_port)
    Ironic(testbed_dir(workdir)).save_state(state)
    if fresh:
        network = fleet.connect(state).network.create_network(
            name="provisioning", provider_network_type="flat", provider_physical_network=PHYSNET, shared=True
        )
        state.network_id = network.id


def _port(state: State, name: str) -> int:
    """The port of the testbed's Keystone or Neutron; an error if it runs none."""
    port = getattr(state, f"{name}_port") if name in SERVICES else None
    if port is None:
        raise TestbedError(f"this testbed runs no {name!r}", hint=f"add {', '.join(SERVICES)} with 'testbed up --with'")
    return port


def start_service(workdir: Path, name: str) -> State:
    """Start a stopped Keystone or Neutron again, on its port and with its data (after `stop_service`)."""
    ironic, state = running(workdir)
    port = _port(state, name)
    if name == "keystone" and not process.alive(state.keystone_pid):
        state.keystone_pid = Keystone(testbed_dir(workdir) / "keystone").start(port)
        ironic.save_state(state)
    elif name == "neutron" and not process.alive(state.neutron_pid):
        start_neutron(workdir, state)
    return state


def stop_service(workdir: Path, name: str) -> State:
    """Stop Keystone or Neutron by its PID, keeping its data: a real outage, which `start_service` ends."""
    ironic = Ironic(testbed_dir(workdir))
    state = ironic.load_state()
    if state is None:
        raise TestbedError("no testbed in this directory")
    _port(state, name)
    if process.owned(pid := getattr(state, f"{name}_pid"), ironic.dir / name):
        process.stop(pid)
    setattr(state, f"{name}_pid", None)
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
    """Each recorded service -> (PID, the directory it was started in); Ironic first (it calls the others)."""
    return {
        "Ironic": (state.pid, ironic.dir),
        "Neutron": (state.neutron_pid, ironic.dir / "neutron"),
        "Keystone": (state.keystone_pid, ironic.dir / "keystone"),
    }


def strangers(ironic: Ironic, state: State) -> list[str]:
    """Recorded PIDs that are alive but no longer the process the testbed started (the PID was reused)."""
    return [
        f"{name} PID {pid}"
        for name, (pid, directory) in own_processes(ironic, state).items()
        if process.alive(pid) and not process.owned(pid, directory)
    ]


def stop_all(ironic: Ironic, state: State) -> list[str]:
    """Stop each service by its PID, only while that PID is still the one the testbed started; the state
    forgets every PID. Returns the strangers left alone."""
    left = strangers(ironic, state)
    for pid, directory in own_processes(ironic, state).values():
        if process.owned(pid, directory):
            process.stop(pid)
    state.pid = state.neutron_pid = state.keystone_pid = None
    ironic.save_state(state)
    return left


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
    config_file.write_text(
        f"{MARKER}\n"
        "# the local testbed: one site, observe-only; see docs/config.md for every key\n"
        + yaml.safe_dump({"state_dir": ".hammersmith", "sites": {SITE_NAME: {"cloud": CLOUD_NAME}}}, sort_keys=False)
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
        "keystone": {"url": state.auth_url, "pid": state.keystone_pid, "running": process.alive(state.keystone_pid)}
        if state.keystone_port
        else None,
        "neutron": {"url": state.neutron_url, "pid": state.neutron_pid, "running": process.alive(state.neutron_pid)}
        if state.neutron_port
        else None,
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
    if state.neutron_port and not process.alive(state.neutron_pid):
        start_neutron(workdir, state)  # e.g. after a crash while a fault had it stopped
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
        injector.inject(fault, [node] if node else injector.pick(count), combine=combine)
    return {n: f for n, f in state.faults.items() if n not in before}
