"""`testbed up|status|down|inject`: the steps, independent of how the CLI shows progress."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from hammersmith.errors import TestbedError
from hammersmith.testbed import fleet, process
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
from hammersmith.testbed.neutron import NEUTRON_VERSION, PHYSNET, Neutron

MARKER = "# written by 'hammersmith testbed up'"
Step = Callable[[str, int | None], Callable[[int], None]]
"""start a progress step: (description, total) -> advance(completed)"""


def testbed_dir(workdir: Path) -> Path:
    return workdir / ".hammersmith" / "testbed"


def up(workdir: Path, nodes: int, port: int | None, step: Step, neutron: bool = False) -> State:
    """Install (once), start Ironic (and Neutron) on fresh databases, enrol nodes, write the client files."""
    ironic = Ironic(testbed_dir(workdir))
    previous = ironic.load_state()
    if previous and process.alive(previous.pid):
        raise TestbedError(
            f"a testbed is already running here (PID {previous.pid}, {previous.url})",
            hint="'hammersmith testbed down' first, or use it as it is",
        )
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
    if neutron:
        step(f"installing and starting Neutron {NEUTRON_VERSION} (first run installs it)", None)(0)
        start_neutron(workdir, state)
    step(f"starting Ironic on {state.url}", None)(0)
    try:
        ironic.start(state)
        conn = fleet.connect(state.url, state.neutron_url)
        advance = step(f"enrolling {nodes} nodes and cleaning them to 'available'", nodes)
        fleet.enrol(conn, nodes, advance)
    except Exception:
        ironic.stop(state)
        process.stop(state.neutron_pid)
        raise
    state.nodes = nodes
    ironic.save_state(state)
    write_client_files(workdir, state)
    return state


def start_neutron(workdir: Path, state: State) -> None:
    """Start the testbed's Neutron and give it the flat provisioning network Ironic's nodes use."""
    server = Neutron(testbed_dir(workdir) / "neutron")
    if state.neutron_port is None:
        server.prepare()
        state.neutron_port = free_port()
    state.neutron_pid = server.start(state.neutron_port)
    Ironic(testbed_dir(workdir)).save_state(state)
    if state.network_id is None:
        conn = fleet.connect(state.url, state.neutron_url)
        network = conn.network.create_network(
            name="provisioning", provider_network_type="flat", provider_physical_network=PHYSNET, shared=True
        )
        state.network_id = network.id


def stop_neutron(workdir: Path, state: State) -> None:
    process.stop(state.neutron_pid)
    state.neutron_pid = None
    Ironic(testbed_dir(workdir)).save_state(state)


def write_client_files(workdir: Path, state: State) -> None:
    """clouds.yaml and hammersmith.yaml in workdir, so later commands need no flags.

    An existing clouds.yaml keeps its other clouds; an operator's own hammersmith.yaml is never
    overwritten (only one this command wrote).
    """
    clouds_file = workdir / "clouds.yaml"
    clouds: dict[str, Any] = {"clouds": {}}
    if clouds_file.exists():
        clouds = yaml.safe_load(clouds_file.read_text()) or {"clouds": {}}
    cloud = {"auth_type": "none", "baremetal_endpoint_override": state.url, "baremetal_api_version": "1"}
    if state.neutron_url:
        cloud["network_endpoint_override"] = state.neutron_url
    clouds.setdefault("clouds", {})[CLOUD_NAME] = cloud
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
        "neutron": {"url": state.neutron_url, "pid": state.neutron_pid, "running": process.alive(state.neutron_pid)}
        if state.neutron_port
        else None,
        "directory": str(ironic.dir),
        "faults": state.faults,
    }
    if result["running"]:
        nodes = fleet.list_nodes(fleet.connect(state.url))
        result["nodes"] = len(nodes)
        result["provision_states"] = dict(Counter(n["provision_state"] for n in nodes))
    return result


def down(workdir: Path) -> State | None:
    ironic = Ironic(testbed_dir(workdir))
    state = ironic.load_state()
    if state:
        ironic.stop(state)
        stop_neutron(workdir, state)
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
    if state.neutron_port and not process.alive(state.neutron_pid):
        start_neutron(workdir, state)  # e.g. after a crash while a fault had it stopped
    injector = Injector(fleet.connect(state.url, state.neutron_url), ironic, state)
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
