"""The testbed acts only on the Ironic it started: a second, real Ironic on its port is refused, never touched."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hammersmith.errors import TestbedError
from hammersmith.testbed import fleet, ironic, lifecycle, process
from hammersmith.testbed.ironic import Ironic, free_port
from tests.conftest import Testbed, _quiet_step, hammersmith

# every test starts at least one Ironic of its own; the budget includes the module's foreign one
pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Another testbed's Ironic with 2 nodes: to the testbed under test, an Ironic it did not start."""
    workdir = tmp_path_factory.mktemp("foreign")
    state = lifecycle.up(workdir, 2, free_port(), _quiet_step)
    try:
        yield Testbed(workdir, state)
    finally:
        lifecycle.down(workdir)


@pytest.fixture
def mine(tmp_path: Path) -> Iterator[Testbed]:
    """The testbed under test (1 node); its Ironic is stopped by the PID `up` recorded, whatever the test
    wrote into its state since."""
    state = lifecycle.up(tmp_path, 1, free_port(), _quiet_step)
    pid = state.pid
    try:
        yield Testbed(tmp_path, state)
    finally:
        if process.owned(pid, Ironic(lifecycle.testbed_dir(tmp_path)).dir):
            process.stop(pid)


def fleet_of(bed: Testbed) -> dict[str, tuple]:
    """What a wrongly aimed enrolment, fault or tear down would change, per node."""
    return {
        n["name"]: (n["id"], n["provision_state"], n["is_maintenance"], n["maintenance_reason"], n["instance_id"])
        for n in fleet.list_nodes(fleet.connect(bed.state))
    }


def point_at(bed: Testbed, other: Testbed, pid: int | None = None) -> None:
    """Make `bed`'s state name the other Ironic's port (as when that one took the port), and optionally its PID."""
    bed.state.port = other.state.port
    bed.state.pid = pid or bed.state.pid
    Ironic(lifecycle.testbed_dir(bed.workdir)).save_state(bed.state)


def processes_in(directory: Path) -> list[int]:
    """PIDs whose working directory is `directory`: whatever a testbed started there and left running."""
    found = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and os.readlink(f"/proc/{entry.name}/cwd") == str(directory):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_own_ironic_passes_the_identity_check(mine: Testbed, foreign: Testbed) -> None:
    Ironic(lifecycle.testbed_dir(mine.workdir)).verify(mine.state)
    assert mine.state.host != foreign.state.host and mine.state.host.startswith("hammersmith-testbed-")
    answer = httpx.get(f"{mine.state.url}/v1/conductors", headers={"X-OpenStack-Ironic-API-Version": "1.49"})
    # alive: the enrolled fleet's database also holds the conductor of the scratch Ironic that made it, offline
    assert [c["hostname"] for c in answer.json()["conductors"] if c["alive"]] == [mine.state.host]
    # Ironic's forked worker, not the PID the testbed recorded, holds the socket: hence the process-group check
    (holders,) = process.listeners(mine.state.port).values()
    assert holders and mine.state.pid not in holders
    assert {process.group(pid) for pid in holders} == {mine.state.pid}


def test_inject_and_down_refuse_an_ironic_on_the_port_they_did_not_start(mine: Testbed, foreign: Testbed) -> None:
    before = fleet_of(foreign)
    point_at(mine, foreign)
    injected = hammersmith("testbed", "inject", "maintenance-no-reason", "--node", "node-001", cwd=mine.workdir)
    assert injected.returncode == 1 and "Traceback" not in injected.stderr
    assert "is not this testbed's" in injected.stderr and f"port {foreign.state.port} is held by PID" in injected.stderr
    assert Ironic(lifecycle.testbed_dir(mine.workdir)).load_state().faults == {}  # type: ignore[union-attr]
    own_pid = mine.state.pid
    # in this process, which started (and so reaps) the Ironic it stops
    with pytest.raises(TestbedError, match=f"left running: PID .* on its port {foreign.state.port}"):
        lifecycle.down(mine.workdir)
    assert not process.alive(own_pid)  # its own Ironic is stopped ...
    assert process.alive(foreign.state.pid) and fleet_of(foreign) == before  # ... the other one untouched


def test_down_never_signals_a_recorded_pid_that_is_no_longer_its_own(mine: Testbed, foreign: Testbed) -> None:
    """The recorded PID now belongs to another Ironic (as after a PID reuse): inject and down leave it alone."""
    before = fleet_of(foreign)
    point_at(mine, foreign, pid=foreign.state.pid)
    injected = hammersmith("testbed", "inject", "maintenance-no-reason", cwd=mine.workdir)
    assert injected.returncode == 1 and f"PID {foreign.state.pid} is no longer the Ironic it started" in injected.stderr
    with pytest.raises(TestbedError, match=f"left running: .*Ironic PID {foreign.state.pid}"):
        lifecycle.down(mine.workdir)
    assert process.alive(foreign.state.pid) and fleet_of(foreign) == before
    assert lifecycle.down(mine.workdir)  # the state forgot the stranger: nothing left to refuse


def test_up_refuses_a_port_another_ironic_holds(tmp_path: Path, foreign: Testbed) -> None:
    before = fleet_of(foreign)
    with pytest.raises(TestbedError, match=f"port {foreign.state.port} on 127.0.0.1 is already in use"):
        lifecycle.up(tmp_path, 1, foreign.state.port, _quiet_step)
    assert fleet_of(foreign) == before
    assert processes_in(lifecycle.testbed_dir(tmp_path).resolve()) == []


def test_up_never_enrols_into_an_ironic_that_took_its_port(
    tmp_path: Path, foreign: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race `up` can't rule out by looking first: the port was free when checked, then another Ironic (one
    restarting, say) bound it. Ours can't bind, the other answers the readiness check; `up` must not enrol."""
    before = fleet_of(foreign)
    monkeypatch.setattr(ironic, "port_in_use", lambda port: False)  # the moment before the other one bound it
    with pytest.raises(TestbedError, match=f"is not this testbed's: port {foreign.state.port} is held by PID"):
        lifecycle.up(tmp_path, 3, foreign.state.port, _quiet_step)
    assert fleet_of(foreign) == before  # no node-003, nothing cleaned or powered
    assert processes_in(lifecycle.testbed_dir(tmp_path).resolve()) == []
    assert Ironic(lifecycle.testbed_dir(tmp_path)).load_state().pid is None  # type: ignore[union-attr]
