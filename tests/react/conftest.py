"""A testbed of its own for the hammers (they change the fleet), and sweepers with a per-test store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from hammersmith import config
from hammersmith.react.sweep import Sweeper
from hammersmith.store import Store, open_store
from hammersmith.store.ledger import APPLIED_OUTCOMES
from hammersmith.testbed import fleet, lifecycle
from hammersmith.testbed.faults import FAULTS, Injector
from hammersmith.testbed.ironic import CLOUD_NAME, Ironic, free_port
from tests.conftest import Testbed, _quiet_step

HANDS_OFF = {"user-active": 2, "operator-maintenance": 1}
#: node fields that must not change on a node a hammer has to leave alone
WATCHED = ("provision_state", "maintenance", "maintenance_reason", "instance_uuid", "extra", "last_error")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Testbed]:
    """30 nodes; users' instances and operators' maintenance (one on top of a known error) from the start.

    A test module sets `NEUTRON = True` to get a real Neutron beside Ironic.
    """
    workdir = tmp_path_factory.mktemp("hammerbed")
    neutron = getattr(request.module, "NEUTRON", False)
    state = lifecycle.up(workdir, 30, free_port(), _quiet_step, {"neutron"} if neutron else ())
    try:
        for fault, count in HANDS_OFF.items():
            lifecycle.inject(workdir, fault, count=count)
        lifecycle.inject(workdir, "operator-maintenance", combine="error-teardown")
        yield Testbed(workdir, Ironic(lifecycle.testbed_dir(workdir)).load_state() or state)
    finally:
        lifecycle.down(workdir)


def break_nodes(bed: Testbed, fault: str, count: int = 1, node: str | None = None) -> list[str]:
    return list(lifecycle.inject(bed.workdir, fault, node=node, count=count))


def rebreak(bed: Testbed, fault: str, node: str) -> None:
    """Apply a fault again to a node that carried it before (a chronic fault)."""
    ironic = Ironic(lifecycle.testbed_dir(bed.workdir))
    state = ironic.load_state()
    assert state is not None
    FAULTS[fault].apply(Injector(fleet.connect(state), ironic, state), node)


def applied(store: Store, node: str) -> list[str]:
    """Outcomes of the ledger rows on `node` that called, or may have called, the API (oldest last)."""
    return [r.outcome for r in store.actions(node=node) if r.mode == "apply" and r.outcome in APPLIED_OUTCOMES]


def hands_off_nodes(bed: Testbed) -> dict[str, dict[str, Any]]:
    faults = Ironic(lifecycle.testbed_dir(bed.workdir)).load_state().faults  # type: ignore[union-attr]
    names = [n for n, steps in faults.items() if steps[-1] in HANDS_OFF]
    return {n: {k: bed.node_raw(n).get(k) for k in WATCHED} for n in names}


def wait_states(bed: Testbed, names: list[str], states: set[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    return fleet.wait_for(bed.conn, names, states, timeout, fail_fast=False)


@pytest.fixture(autouse=True)
def bed_clouds(clean_environ: None, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sweeper and agent (in-process or not) in a test that uses the bed finds the bed's cloud.

    A test that asks for no bed, directly or through a fixture, never starts one (pure logic, validation).
    """
    if "bed" in request.fixturenames:
        bed: Testbed = request.getfixturevalue("bed")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(bed.workdir / "clouds.yaml"))


@pytest.fixture
def make_sweeper(tmp_path: Path) -> Iterator[Callable[..., Sweeper]]:
    """Sweepers sharing one store in tmp_path, for a config built from keyword overrides."""
    made: list[tuple[Sweeper, Store]] = []

    def make(modes: dict[str, str], notify: list[str] | None = None, **policy: Any) -> Sweeper:
        settings = config.load(write_config(tmp_path, modes, notify, **policy))
        store = open_store(settings.effective_store_url, settings.state_dir)
        sweeper = Sweeper(settings, "lab", store)
        made.append((sweeper, store))
        return sweeper

    yield make
    for sweeper, store in made:
        sweeper.close()
        store.close()


def write_config(directory: Path, modes: dict[str, str], notify: list[str] | None = None, **policy: Any) -> Path:
    """hammersmith.yaml for the hammer bed: no grace period, stale-inspection off unless asked for."""
    site = {
        "cloud": CLOUD_NAME,
        "notify": notify or [],
        "policy": {"grace_minutes": 0, "hammers": {"stale-inspection": "off", **modes}, **policy},
    }
    path = directory / "hammersmith.yaml"
    settings = {"state_dir": str(directory), "http": {"listen": "127.0.0.1:0"}, "sites": {"lab": site}}
    path.write_text(yaml.safe_dump(settings))
    return path


def untouched(before: dict[str, dict[str, Any]], bed: Testbed) -> None:
    for name, fields in before.items():
        assert {k: bed.node_raw(name).get(k) for k in WATCHED} == fields, f"hands-off node {name} was touched"


def settle(seconds: float = 1.0) -> None:
    time.sleep(seconds)


@contextmanager
def slow_ironic(bed: Testbed, **delays: int) -> Iterator[None]:
    """The bed's Ironic restarted with fake delays (a slow BMC, a long inspection), and back to normal after."""
    ironic = Ironic(lifecycle.testbed_dir(bed.workdir))
    state = ironic.load_state()
    assert state is not None
    ironic.restart(state, **delays)
    try:
        yield
    finally:
        ironic.restart(state)


def only(actions: list[dict[str, Any]], node: str) -> dict[str, Any]:
    (action,) = [a for a in actions if a["node"] == node]
    return action


def idle_nodes(bed: Testbed, count: int) -> list[str]:
    """Available nodes no fault or test has touched (the highest names: faults pick the lowest)."""
    faults = Ironic(lifecycle.testbed_dir(bed.workdir)).load_state().faults  # type: ignore[union-attr]
    free = sorted(
        n.name
        for n in bed.conn.baremetal.nodes(details=True)
        if n.provision_state == "available" and not n.is_maintenance and n.name not in faults
    )
    return free[-count:]
