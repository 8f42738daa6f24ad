"""Fault injection: produce each known error the way it happens in production, where Ironic allows.

Every fault starts from an `available` node. With the testbed's Neutron (`testbed up --with neutron`)
VIFs are real: attached through Ironic's VIF API, broken by deleting the Neutron port or by a
real Neutron outage. Without Neutron, and for one step in every mode, the testbed writes its own
Ironic SQLite database (a fixture, never product code): the VIF record a Neutron-backed attach
would leave, and back-dating `provision_updated_at` so a hung deploy looks as old as the ones
operators find.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hammersmith.errors import TestbedError
from hammersmith.testbed import process
from hammersmith.testbed.fleet import WORKERS, Admin, wait_for
from hammersmith.testbed.ironic import DEAD_ENDPOINT, Ironic, State
from hammersmith.testbed.neutron import Neutron

OPERATOR_REASON = "Replacing DIMM B2, ticket OPS-1432 (jdoe)"
#: states a fault may leave a node in, for the batch wait
WAIT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    hands_off: bool
    apply: Callable[[Injector, str], None]
    #: part of the demo scenario (the others serve the hammer tests and benchmarks)
    in_demo: bool = True


FAULTS: dict[str, Fault] = {}


def fault(
    name: str, summary: str, hands_off: bool = False, in_demo: bool = True
) -> Callable[[Callable[[Injector, str], None]], Callable[[Injector, str], None]]:
    """Register a fault; `hands_off` marks the cases a tool must leave alone."""

    def register(func: Callable[[Injector, str], None]) -> Callable[[Injector, str], None]:
        FAULTS[name] = Fault(name, summary, hands_off, func, in_demo)
        return func

    return register


#: `testbed inject --scenario demo`: a mixed fleet, known errors next to what must be left alone
SCENARIOS: dict[str, list[tuple[str, int, str | None]]] = {
    "demo": [
        ("error-teardown", 2, None),
        ("deploy-failed", 1, None),
        ("clean-failed", 1, None),
        ("stuck-deploying", 1, None),
        ("dirty-port", 2, None),
        ("maintenance-no-reason", 1, None),
        ("user-active", 3, None),
        ("operator-maintenance", 1, None),
        ("operator-maintenance", 1, "error-teardown"),
    ],
}


class Injector:
    """Drives faults against one running testbed."""

    def __init__(self, conn: Admin, ironic: Ironic, state: State) -> None:
        self.conn = conn
        self.bm = conn.baremetal
        self.ironic = ironic
        self.state = state
        self.neutron_lock = threading.Lock()  # no Neutron call while another fault has Neutron down

    @property
    def neutron(self) -> bool:
        return self.state.port_of("neutron") is not None

    def use_flat_network(self, node: str) -> None:
        """The network interface that really talks to Neutron, on the testbed's provisioning network."""
        self.bm.patch_node(
            node,
            [
                {"op": "add", "path": "/network_interface", "value": "flat"},
                {"op": "add", "path": "/driver_info/cleaning_network", "value": self.state.network_id},
                {"op": "add", "path": "/driver_info/provisioning_network", "value": self.state.network_id},
            ],
        )

    def attach_vif(self, node: str) -> str:
        """A VIF the way Nova attaches one: with Neutron, a real port through Ironic's VIF API;
        without, a fixture write of the record that API would leave."""
        if not self.neutron:
            vif = str(uuid.uuid4())
            self.sql(
                "UPDATE ports SET internal_info = ? WHERE node_id = (SELECT id FROM nodes WHERE name = ?)",
                json.dumps({"tenant_vif_port_id": vif}),
                node,
            )
            return vif
        with self.neutron_lock:
            port = self.conn.network.create_port(network_id=self.state.network_id, name=f"vif-{node}")
            self.bm.attach_vif_to_node(node, port.id)
        return str(port.id)

    @contextmanager
    def neutron_down(self) -> Iterator[None]:
        """A real Neutron outage (stopped by PID, started again), one at a time."""
        if not self.neutron:
            yield  # Ironic's Neutron endpoint is a dead port anyway
            return
        with self.neutron_lock:
            process.stop(self.state.pid_of("neutron"))
            try:
                yield
            finally:
                port = self.state.port_of("neutron") or 0
                self.state.set_pid("neutron", Neutron(self.ironic.dir / "neutron").start(port))
                self.ironic.save_state(self.state)

    # -- helpers the faults share -------------------------------------------------------------
    def wait(self, node: str, *states: str) -> dict:
        return wait_for(self.conn, [node], set(states), WAIT_TIMEOUT)[node]

    def sql(self, statement: str, *params: object) -> None:
        """A fixture write to the testbed's own Ironic database (see the module docstring)."""
        with sqlite3.connect(self.ironic.db, timeout=30) as db:
            if db.execute(statement, params).rowcount != 1:
                raise TestbedError(f"fixture write matched no row: {statement}")

    def with_maintenance(self, node: str, **fields: object) -> None:
        """Change interfaces Ironic only lets you change in maintenance, then leave maintenance."""
        self.bm.set_node_maintenance(node, reason="hammersmith testbed: restoring interfaces")
        self.bm.update_node(node, **fields)
        self.bm.unset_node_maintenance(node)

    def deploy(self, node: str, **instance_info: object) -> None:
        info = {"image_source": f"{self.state.url}/", "image_checksum": "0" * 32, **instance_info}
        self.bm.update_node(node, instance_info=info)
        self.bm.set_node_provision_state(node, "active", wait=False)

    # -- selection and bookkeeping ----------------------------------------------------------
    def pick(self, count: int) -> list[str]:
        """The first `count` healthy available nodes that carry no fault yet."""
        free = sorted(
            n.name
            for n in self.bm.nodes(details=True)
            if n.provision_state == "available" and not n.is_maintenance and n.name not in self.state.faults
        )
        if len(free) < count:
            raise TestbedError(
                f"only {len(free)} healthy available nodes left, {count} needed",
                hint="run 'hammersmith testbed up --nodes N' with more nodes",
            )
        return free[:count]

    def inject(self, name: str, nodes: list[str], combine: str | None = None) -> None:
        """Apply a fault (optionally after another one) to several nodes concurrently."""
        steps = [FAULTS[combine], FAULTS[name]] if combine else [FAULTS[name]]

        def one(node: str) -> None:
            for step in steps:
                step.apply(self, node)

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(one, nodes))
        for node in nodes:
            self.state.faults[node] = [s.name for s in steps]
        self.ironic.save_state(self.state)


@fault("error-teardown", "error after 'Failed to tear down': Neutron unreachable while detaching the VIF")
def error_teardown(inj: Injector, node: str) -> None:
    # a tenant deploy on the flat network with a VIF attached, as Nova leaves it
    if inj.neutron:
        inj.use_flat_network(node)
    else:
        inj.bm.update_node(node, network_interface="flat")
    inj.deploy(node, display_name=f"experiment-{node}")
    inj.wait(node, "active")
    inj.attach_vif(node)
    with inj.neutron_down():  # Neutron is down while the tear down detaches the VIF: it fails
        inj.bm.set_node_provision_state(node, "deleted", wait=False)
        inj.wait(node, "error")
    # Neutron "comes back": the node keeps its error but could now be torn down again
    inj.with_maintenance(node, network_interface="noop")


@fault("deploy-failed", "deploy failed: the image server is unreachable")
def deploy_failed(inj: Injector, node: str) -> None:
    inj.bm.update_node(node, deploy_interface="direct")
    inj.deploy(node, image_source=f"{DEAD_ENDPOINT}images/ubuntu-22.04.qcow2")
    inj.wait(node, "deploy failed")
    inj.with_maintenance(node, deploy_interface="fake")


@fault("clean-failed", "clean failed: a BIOS clean step rejects its settings (Ironic also sets maintenance)")
def clean_failed(inj: Injector, node: str) -> None:
    inj.bm.set_node_provision_state(node, "manage", wait=False)
    inj.wait(node, "manageable")
    inj.bm.set_node_provision_state(
        node,
        "clean",
        wait=False,
        clean_steps=[{"interface": "bios", "step": "apply_configuration", "args": {"settings": [{"bogus": 1}]}}],
    )
    inj.wait(node, "clean failed")


@fault(
    "clean-failed-automated",
    "clean failed on the way to available: the cleaning ramdisk never called back and the clean was aborted",
    in_demo=False,
)
def clean_failed_automated(inj: Injector, node: str) -> None:
    inj.bm.set_node_provision_state(node, "manage", wait=False)
    inj.wait(node, "manageable")
    inj.bm.update_node(node, deploy_interface="direct")  # cleaning waits for a ramdisk that never comes
    inj.bm.set_node_provision_state(node, "provide", wait=False)
    inj.wait(node, "clean wait")
    inj.bm.set_node_provision_state(node, "abort", wait=False)
    inj.wait(node, "clean failed")
    inj.with_maintenance(node, deploy_interface="fake")  # the ramdisk "works" again: a retry succeeds


@fault(
    "teardown-keeps-failing",
    "error after 'Failed to tear down', and every tear down fails again (Neutron stays down)",
    in_demo=False,  # needs the Ironic-only tier; the demo runs Neutron
)
def teardown_keeps_failing(inj: Injector, node: str) -> None:
    if inj.neutron:
        raise TestbedError("teardown-keeps-failing needs the Ironic-only testbed (its Neutron is a dead port)")
    error_teardown(inj, node)
    inj.with_maintenance(node, network_interface="flat")  # Ironic's Neutron endpoint stays unreachable
    inj.attach_vif(node)  # the VIF the next tear down must unbind, through that dead endpoint


@fault("stuck-deploying", "held in 'wait call-back': the deploy ramdisk never calls back (aged 2 h)")
def stuck_deploying(inj: Injector, node: str) -> None:
    inj.bm.update_node(node, deploy_interface="direct")
    inj.deploy(node, display_name=f"experiment-{node}")
    inj.wait(node, "wait call-back")
    aged = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None).isoformat(sep=" ")
    inj.sql("UPDATE nodes SET provision_updated_at = ? WHERE name = ?", aged, node)


@fault("dirty-port", "available, but its port keeps a stale tenant_vif_port_id in internal_info")
def dirty_port(inj: Injector, node: str) -> None:
    if inj.neutron:  # a VIF attached through Ironic, whose Neutron port is then deleted behind its back
        inj.use_flat_network(node)
        vif = inj.attach_vif(node)
        with inj.neutron_lock:
            inj.conn.network.delete_port(vif)
    else:
        inj.attach_vif(node)


@fault("maintenance-no-reason", "maintenance set without a reason")
def maintenance_no_reason(inj: Injector, node: str) -> None:
    inj.bm.set_node_maintenance(node)


@fault("user-active", "deployed, powered on, with a user's instance (leave alone)", hands_off=True)
def user_active(inj: Injector, node: str) -> None:
    inj.bm.update_node(node, instance_id=str(uuid.uuid4()))
    inj.deploy(node, display_name=f"user-experiment-{node}", project_id="a1b2c3d4e5f6")
    inj.wait(node, "active")
    inj.bm.set_node_power_state(node, "power on", wait=False)


@fault("operator-maintenance", "maintenance with an operator's reason (leave alone)", hands_off=True)
def operator_maintenance(inj: Injector, node: str) -> None:
    inj.bm.set_node_maintenance(node, reason=OPERATOR_REASON)
