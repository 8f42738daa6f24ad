"""The must-not-touch holes, against the real Ironic: an operator's reason over Ironic's fault, nodes parked in
manageable, a conductor lock seen after the re-check, acting only on what was checked, malformed attempt records,
and locks that belong to an action (not a process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hammersmith.react import safety
from hammersmith.react.sweep import Sweeper
from hammersmith.store import open_store
from hammersmith.store.ledger import APPLIED_OUTCOMES
from hammersmith.testbed import lifecycle
from hammersmith.testbed.faults import Injector
from hammersmith.testbed.fleet import connect
from hammersmith.testbed.ironic import Ironic
from tests.conftest import Testbed
from tests.react.conftest import break_nodes, hands_off_nodes, idle_nodes, only, slow_ironic, untouched, wait_states


def applied(sweeper: Sweeper, node: str) -> list[str]:
    return [r.outcome for r in sweeper.store.actions(node=node) if r.mode == "apply" and r.outcome in APPLIED_OUTCOMES]


def everyone_but(bed: Testbed, *names: str) -> list[str]:
    return [n.name for n in bed.conn.baremetal.nodes() if n.name not in names]


def injector(bed: Testbed) -> Injector:
    ironic = Ironic(lifecycle.testbed_dir(bed.workdir))
    state = ironic.load_state()
    assert state is not None
    return Injector(connect(state), ironic, state)


def test_an_operators_reason_over_ironics_fault_is_hands_off(
    bed: Testbed, make_sweeper: Callable[..., Sweeper]
) -> None:
    """Ironic keeps `fault` when an operator writes a reason over it; the node is then the operator's."""
    (name,) = break_nodes(bed, "clean-failed")
    node = bed.node_raw(name)
    assert node["fault"] == "clean failure" and node["maintenance_reason"] == node["last_error"]  # Ironic's words
    sweeper = make_sweeper({"clean-failed": "apply", "error-resetter": "off"})
    for reason in ("ann: replacing the BIOS battery, OPS-7", "ann: battery ordered, back Friday"):
        bed.conn.baremetal.set_node_maintenance(name, reason=reason)
        assert bed.node_raw(name)["fault"] == "clean failure"  # the operator's reason, Ironic's fault kept
        action = only(sweeper.sweep(apply=True).actions, name)
        assert (action["outcome"], action["reason"]) == ("refused", f"operator maintenance: {reason}")
        alert = sweeper.act_on("clean-failed", name)
        assert (
            alert.actions == []
            and alert.skipped["alert"] == f"refused by the safety layer: operator maintenance: {reason}"
        )
        after = bed.node_raw(name)
        assert (after["provision_state"], after["maintenance"], after["maintenance_reason"]) == (
            "clean failed",
            True,
            reason,
        )
    # the operator is done and ends the maintenance: now the hammer may act (a manual clean: back to manageable)
    bed.conn.baremetal.unset_node_maintenance(name)
    assert only(sweeper.sweep(apply=True).actions, name)["outcome"] == "fixed"
    assert bed.node_raw(name)["provision_state"] == "manageable"
    bed.conn.baremetal.set_node_provision_state(name, "provide", wait=True, timeout=60)


def test_a_node_parked_in_manageable_is_never_made_available(
    bed: Testbed, make_sweeper: Callable[..., Sweeper]
) -> None:
    parked, pooled = idle_nodes(bed, 2)
    bed.conn.baremetal.set_node_provision_state(parked, "manage", wait=True, timeout=60)
    sweeper = make_sweeper(
        {"stale-inspection": "apply", "error-resetter": "off"},
        exempt_nodes=everyone_but(bed, parked, pooled),
        inspect_per_sweep=2,
    )
    result = sweeper.sweep(apply=True)
    assert {only(result.actions, n)["outcome"] for n in (parked, pooled)} == {"fixed"}
    rows = {r.node_name: r for r in sweeper.store.actions(hammer="stale-inspection") if r.outcome == "fixed"}
    assert rows[parked].params == {"return_to": "manageable"} and rows[pooled].params == {"return_to": "available"}
    assert bed.node_raw(parked)["provision_state"] == "manageable"  # inspected, and left where the operator put it
    assert bed.node_raw(pooled)["provision_state"] == "available"  # the hammer took it out, the hammer put it back
    assert bed.node_raw(parked)["inspection_finished_at"] and bed.node_raw(pooled)["inspection_finished_at"]
    bed.conn.baremetal.set_node_provision_state(parked, "provide", wait=True, timeout=60)


@pytest.fixture
def slow_power(bed: Testbed) -> Iterator[None]:
    """A power action holds the conductor's node lock for 6 s (a slow BMC)."""
    with slow_ironic(bed, power_delay=6):
        yield


def test_a_conductor_lock_after_the_recheck_stops_the_action(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], monkeypatch: pytest.MonkeyPatch, slow_power: None
) -> None:
    """Another party takes the node between our re-check and our call: 409 NodeLocked means stop, not wait."""
    (name,) = break_nodes(bed, "deploy-failed")
    recheck = safety.recheck

    def someone_else_acts(*args: Any) -> safety.Live:
        live = recheck(*args)
        bed.conn.baremetal.set_node_power_state(name, "power off", wait=False)  # holds the lock for 6 s
        return live

    monkeypatch.setattr(safety, "recheck", someone_else_acts)
    sweeper = make_sweeper({"error-resetter": "apply"})
    action = only(sweeper.sweep(apply=True).actions, name)
    assert (
        action["outcome"] == "refused"
        and action["reason"].startswith("locked: ")
        and "locked by host" in action["reason"]
    )
    (row,) = sweeper.store.actions(node=name)
    assert (row.outcome, row.mode) == ("refused", "apply") and row.after is not None  # the intent, settled
    monkeypatch.setattr(safety, "recheck", recheck)
    time.sleep(7)  # the other party's power action ends
    # with the SDK's retries the undeploy would have gone through once the lock was free: it must not have
    assert bed.node_raw(name)["provision_state"] == "deploy failed"
    assert applied(sweeper, name) == []  # no attempt spent on a refusal
    assert only(sweeper.sweep(apply=True).actions, name)["outcome"] == "fixed"


def test_dirty_ports_detaches_only_what_was_checked(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VIF that appears after the check is not touched; a node claimed after the check is refused."""
    claimed, dirty = break_nodes(bed, "dirty-port", count=2)
    bm = bed.conn.baremetal
    port = bm.create_port(node_id=bm.get_node(dirty).id, address="52:54:00:ff:01:02", physical_network="physnet1")
    recheck = safety.recheck

    def meanwhile(hammer: Any, action: Any, *args: Any) -> safety.Live:
        if action.node_name == claimed:  # a user's instance lands on it between the check and the lock
            bm.update_node(claimed, instance_id="0d9cd1a4-2d0e-4c67-9b1f-1d3b1d6c0001")
            return recheck(hammer, action, *args)
        live = recheck(hammer, action, *args)
        injector(bed).sql(
            "UPDATE ports SET internal_info = ? WHERE uuid = ?", '{"tenant_vif_port_id": "new-vif"}', port.id
        )
        return live

    monkeypatch.setattr(safety, "recheck", meanwhile)
    sweeper = make_sweeper({"dirty-ports": "apply", "error-resetter": "off"})
    result = sweeper.sweep(apply=True)
    refused = only(result.actions, claimed)
    assert refused["outcome"] == "refused" and refused["reason"].startswith("user instance")
    assert bed.node_raw(claimed)["instance_uuid"]
    ports = bm.get(f"/ports/detail?node={dirty}", microversion="1.78").json()["ports"]
    vifs = {p["address"]: p["internal_info"].get("tenant_vif_port_id") for p in ports}
    assert vifs["52:54:00:ff:01:02"] == "new-vif"  # appeared after the check: untouched
    assert [v for a, v in vifs.items() if a != "52:54:00:ff:01:02"] == [None]  # the checked one is gone
    assert only(result.actions, dirty)["outcome"] == "ineffective"  # honest: a stale VIF is still there
    bm.update_node(claimed, instance_id=None)


def test_a_malformed_attempt_record_refuses_that_node_only(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    bad, naive, good = break_nodes(bed, "deploy-failed", count=3)
    bm = bed.conn.baremetal
    bm.patch_node(bad, [{"op": "add", "path": "/extra/hammersmith_attempts", "value": "three"}])
    stamp = {"error-resetter": ["2026-11-29T10:00:00"]}  # no time zone: which day is it?
    bm.patch_node(naive, [{"op": "add", "path": "/extra/hammersmith_attempts", "value": stamp}])
    result = make_sweeper({"error-resetter": "apply"}).sweep(apply=True)
    for name in (bad, naive):
        action = only(result.actions, name)
        assert action["outcome"] == "refused" and "hammersmith_attempts" in action["reason"], action
        assert bed.node_raw(name)["provision_state"] == "deploy failed"
    assert only(result.actions, good)["outcome"] == "fixed"
    for name in (bad, naive):  # an operator repairs the record: handled like any other node
        bm.patch_node(name, [{"op": "remove", "path": "/extra/hammersmith_attempts"}])


def test_locks_belong_to_an_action_not_a_process(tmp_path: Path) -> None:
    """Two threads of one agent (same host name and PID) never share a node's lock; a release frees only its own."""
    store = open_store(f"sqlite:///{tmp_path / 'locks.sqlite'}")
    try:
        with safety.node_lock(store, "lab", "n1", "host:42", 60) as first:
            with pytest.raises(safety.Refused, match="locked by another"):
                with safety.node_lock(store, "lab", "n1", "host:42", 60):
                    pass
            store.release_lock(site="lab", node_uuid="n1", holder="host:42")  # the process's name frees nothing
            with pytest.raises(safety.Refused):
                with safety.node_lock(store, "lab", "n1", "host:42", 60):
                    pass
            first.renew(force=True)
        with safety.node_lock(store, "lab", "n1", "host:42", 60):
            pass  # released by its holder: free again
    finally:
        store.close()


def test_a_sweep_and_an_alert_at_the_same_moment_give_one_action(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], monkeypatch: pytest.MonkeyPatch
) -> None:
    (name,) = break_nodes(bed, "deploy-failed")
    before = hands_off_nodes(bed)
    sweep_side = make_sweeper({"error-resetter": "apply"})
    alert_side = make_sweeper({"error-resetter": "apply"})
    alert_side.trigger = "alertmanager"
    assert sweep_side.agent == alert_side.agent  # one process: the agent's name alone cannot tell them apart
    recheck = safety.recheck

    def slow(*args: Any) -> safety.Live:  # both reach the lock well within the other's hold
        live = recheck(*args)
        time.sleep(1.5)
        return live

    monkeypatch.setattr(safety, "recheck", slow)
    start = threading.Barrier(2)
    results: dict[str, Any] = {}

    def run(key: str, call: Callable[[], Any]) -> None:
        start.wait()
        results[key] = call()

    threads = [
        threading.Thread(target=run, args=("sweep", lambda: sweep_side.sweep(apply=True))),
        threading.Thread(target=run, args=("alert", lambda: alert_side.act_on("error-resetter", name))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # one API action, whichever side took the lock first (the alert's is verified by a later sweep)
    assert applied(sweep_side, name) in (["fixed"], ["succeeded"])
    outcomes = sorted(a["outcome"] for r in results.values() for a in r.actions if a["node"] == name)
    assert len([o for o in outcomes if o in ("fixed", "succeeded")]) == 1, outcomes
    wait_states(bed, [name], {"available"})
    untouched(before, bed)
