"""Outcomes verified, not assumed, against the real Ironic: fixed or ineffective after the node settles, escalation
instead of a blind retry, dirty ports on the `noop` network interface, failures after the API call, a crash between
an escalation's intent and its call, and follow-ups that return a node after a long inspection."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from openstack.exceptions import HttpException

from hammersmith.react import notify, safety
from hammersmith.react.sweep import Sweeper
from tests.conftest import Testbed, ironic_answers_500
from tests.react.conftest import break_nodes, idle_nodes, only, slow_ironic, wait_states


def test_an_ineffective_fix_is_escalated_not_repeated(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    (name,) = break_nodes(bed, "teardown-keeps-failing")
    sweeper = make_sweeper({"error-resetter": "apply"})
    first = only(sweeper.sweep(apply=True).actions, name)
    assert first["outcome"] == "ineffective" and first["after"]["provision_state"] == "error"
    assert "still there after it settled" in first["reason"]
    second = only(sweeper.sweep(apply=True).actions, name)
    assert second["outcome"] == "escalated" and "its last undeploy was ineffective" in second["reason"]
    node = bed.node_raw(name)
    assert node["maintenance"] and node["maintenance_reason"].startswith(
        "hammersmith: error-resetter gave up: its last undeploy was ineffective"
    )
    rows = sweeper.store.actions(node=name)
    assert [(r.kind, r.outcome) for r in rows] == [("escalate", "escalated"), ("undeploy", "ineffective")]
    assert rows[1].verified_at is not None


def test_fixes_are_verified_and_timed(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    """`fixed` only once the node settled and the hammer no longer sees the fault; MTTR comes from those rows."""
    names = break_nodes(bed, "deploy-failed", count=2)
    sweeper = make_sweeper({"error-resetter": "apply"})
    result = sweeper.sweep(apply=True)
    for name in names:
        action = only(result.actions, name)
        assert action["outcome"] == "fixed" and action["after"]["provision_state"] == "available"
    count, seconds = sweeper.store.mttr("lab")["error-resetter"]
    assert count == 2 and seconds > 0


def test_dirty_ports_on_the_noop_network_interface(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    """`noop` answers 204 to a VIF detach and keeps the VIF: the port is re-created with the same attributes."""
    (name,) = break_nodes(bed, "dirty-port")
    assert bed.node_raw(name)["network_interface"] == "noop"
    bm = bed.conn.baremetal
    (old,) = bm.get(f"/ports/detail?node={name}", microversion="1.78").json()["ports"]
    bm.patch_port(old["uuid"], [{"op": "add", "path": "/extra/cable", "value": "A12"}])
    old = bm.get(f"/ports/{old['uuid']}", microversion="1.78").json()
    assert old["internal_info"]["tenant_vif_port_id"]
    action = only(make_sweeper({"dirty-ports": "apply", "error-resetter": "off"}).sweep(apply=True).actions, name)
    assert action["outcome"] == "fixed"
    (new,) = bm.get(f"/ports/detail?node={name}", microversion="1.78").json()["ports"]
    assert new["uuid"] != old["uuid"] and not new["internal_info"].get("tenant_vif_port_id")
    kept = ("address", "pxe_enabled", "physical_network", "local_link_connection", "extra")
    assert {k: new[k] for k in kept} == {k: old[k] for k in kept}


def test_a_failure_after_the_call_leaves_that_action_unverified_and_the_sweep_goes_on(
    bed: Testbed,
    make_sweeper: Callable[..., Sweeper],
    monkeypatch: pytest.MonkeyPatch,
    inbox: tuple[str, list[dict]],
) -> None:
    url, messages = inbox
    flaky, fine, stored = break_nodes(bed, "deploy-failed", count=3)
    uuids = {n: bed.node_raw(n)["uuid"] for n in (flaky, fine, stored)}
    live, provision, called = safety.live, safety.provision, set()

    def track(conn: Any, node_uuid: str, *args: Any) -> None:
        called.add(node_uuid)
        provision(conn, node_uuid, *args)

    def read_fails(conn: Any, ref: str) -> safety.Live:  # Ironic answers 503 to reads of one node after the call
        if ref == uuids[flaky] and ref in called:
            raise HttpException(message="503 Service Unavailable", http_status=503)
        return live(conn, ref)

    monkeypatch.setattr(safety, "provision", track)
    monkeypatch.setattr(safety, "live", read_fails)
    sweeper = make_sweeper({"error-resetter": "apply"}, notify=[url])
    store_finish = sweeper.store.finish_action

    def store_fails(action_id: int, **kwargs: Any) -> None:  # the store refuses one verdict
        row = [r for r in sweeper.store.actions(node=stored) if r.id == action_id]
        if row and kwargs.get("outcome") == "fixed":
            raise RuntimeError("database is locked")
        store_finish(action_id, **kwargs)

    monkeypatch.setattr(sweeper.store, "finish_action", store_fails)
    result = sweeper.sweep(apply=True)
    assert only(result.actions, flaky)["outcome"] == "unverified" and "503" in only(result.actions, flaky)["reason"]
    assert only(result.actions, stored)["outcome"] == "unverified"
    assert only(result.actions, fine)["outcome"] == "fixed"
    for name in (flaky, stored):
        (row,) = [r for r in sweeper.store.actions(node=name) if r.kind == "undeploy"]
        assert row.outcome == "unverified" and row.finished_at is not None  # the row is finished, not in flight
    last = sweeper.store.last_sweep("lab", ok_only=False)
    assert last is not None and last.ok
    assert {k: v for k, v in last.summary["outcomes"].items() if k in ("unverified", "fixed")} == {
        "unverified": 2,
        "fixed": 1,
    }
    assert any(flaky in m["message"] and "unverified" in m["message"] for m in messages)
    wait_states(bed, [flaky, stored], {"available"})


def test_a_sweep_that_breaks_after_its_snapshot_records_itself_and_notifies(
    bed: Testbed,
    make_sweeper: Callable[..., Sweeper],
    monkeypatch: pytest.MonkeyPatch,
    inbox: tuple[str, list[dict]],
) -> None:
    url, messages = inbox
    sweeper = make_sweeper({"error-resetter": "apply"}, notify=[url])

    def broken(*args: Any) -> None:
        raise RuntimeError("store went away")

    monkeypatch.setattr(notify, "forget_resolved", broken)
    result = sweeper.sweep(apply=True)
    assert result.error == "forget resolved: store went away"
    last = sweeper.store.last_sweep("lab", ok_only=False)
    assert last is not None and not last.ok and last.summary["error"] == result.error
    assert [m for m in messages if m["title"] == "hammersmith [lab]: sweep failed"]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_escalation_is_write_ahead_and_reconciled_after_a_crash(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], monkeypatch: pytest.MonkeyPatch
) -> None:
    (name,) = break_nodes(bed, "deploy-failed")
    spent = {"error-resetter": [datetime.now(UTC).isoformat()]}  # the budget is spent: the next plan escalates
    bed.conn.baremetal.patch_node(name, [{"op": "add", "path": "/extra/hammersmith_attempts", "value": spent}])
    first = make_sweeper({"error-resetter": "apply"}, budget={"attempts": 1, "window_days": 7})
    first.agent = f"{socket.gethostname()}:{dead_pid()}"  # as if this agent were killed mid-call
    call = safety.call

    def crash(conn: Any, method: str, path: str, *args: Any) -> Any:
        if method == "put" and path.endswith("/maintenance"):
            raise SystemExit("killed between the intent and the maintenance call")
        return call(conn, method, path, *args)

    monkeypatch.setattr(safety, "call", crash)
    with pytest.raises(SystemExit):
        first.sweep(apply=True)
    monkeypatch.setattr(safety, "call", call)
    (intent,) = first.store.in_flight("lab")
    assert (intent.kind, intent.node_name) == ("escalate", name)
    assert intent.params["reason"].startswith("hammersmith: error-resetter gave up after 1 attempts")
    assert not bed.node_raw(name)["maintenance"]
    second = make_sweeper({"error-resetter": "apply"}, budget={"attempts": 1, "window_days": 7})
    result = second.sweep(apply=True)
    assert result.reconciled == 1 and only(result.actions, name)["outcome"] == "escalated"
    rows = {r.id: r for r in second.store.actions(node=name)}
    assert rows[intent.id].outcome == "reconciled" and rows[intent.id].after is not None
    assert bed.node_raw(name)["maintenance_reason"].startswith("hammersmith: error-resetter gave up after 1 attempts")


@pytest.fixture
def slow_inspection(bed: Testbed) -> Iterator[None]:
    with slow_ironic(bed, inspect_delay=8):
        yield


def test_stale_inspection_follows_up_after_a_long_inspection(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], slow_inspection: None, inbox: tuple[str, list[dict]]
) -> None:
    """The inspection outlasts the sweep's wait: the row stays pending, other hammers keep off the node, and a later
    sweep (another agent process, after a restart) returns the node to available and records the fix."""
    name = idle_nodes(bed, 2)[0]  # not node-030, which ironic_answers_500 breaks
    others = [n.name for n in bed.conn.baremetal.nodes() if n.name != name]
    modes = {"stale-inspection": "apply", "error-resetter": "off"}
    first = make_sweeper(modes, exempt_nodes=others, verify_seconds=2)
    action = only(first.sweep(apply=True).actions, name)
    assert action["outcome"] == "succeeded" and "verified by a later sweep" in action["reason"]
    (pending,) = first.store.pending("lab")
    assert pending.params == {"return_to": "available"}
    assert bed.node_raw(name)["provision_state"] in ("inspecting", "inspect wait")
    alert = first.act_on("stale-inspection", name)
    assert alert.skipped["alert"] == f"action #{pending.id} (stale-inspection inspect) is still being verified"
    first.close()
    url, messages = inbox
    later = make_sweeper(modes, notify=[url], exempt_nodes=others, verify_seconds=60)  # only the ledger remembers
    wait_states(bed, [name], {"manageable"}, timeout=30)
    assert later.sweep(apply=False).verified == []  # a follow-up is an action: not in an observe sweep
    with ironic_answers_500(bed):  # partial data proves nothing: the row stays pending, the node where it is
        assert later.sweep(apply=True).verified == []
    assert [r.id for r in later.store.pending("lab")] == [pending.id]
    assert bed.node_raw(name)["provision_state"] == "manageable"
    result = later.sweep(apply=True)
    assert result.verified == [{"action_id": pending.id, "node": name, "outcome": "fixed"}]
    assert [a for a in result.actions if a["node"] == name] == []  # not inspected again
    node = bed.node_raw(name)
    assert node["provision_state"] == "available" and node["inspection_finished_at"]
    assert json.dumps(result.summary()["verified"]) == '{"fixed": 1}'
    assert any(f"- fixed: earlier action #{pending.id} on {name}" in m["message"] for m in messages)


def test_stuck_transient_may_unstick_a_node_whose_verification_waits(
    bed: Testbed, make_sweeper: Callable[..., Sweeper]
) -> None:
    """A node hung in a waiting state with an action pending: other hammers keep off, stuck-transient aborts it."""
    (name,) = break_nodes(bed, "stuck-deploying")
    node = bed.node_raw(name)
    sweeper = make_sweeper({"stuck-transient": "apply", "error-resetter": "apply"})
    pending = sweeper.store.begin_action(
        site="lab",
        hammer="error-resetter",
        node_uuid=node["uuid"],
        node_name=name,
        trigger="sweep",
        kind="undeploy",
        params={"target": "deleted", "state": "deploy failed"},
        before=None,
    )
    sweeper.store.finish_action(pending, outcome="succeeded")
    result = sweeper.sweep(apply=True)
    abort = only(result.actions, name)
    assert (abort["hammer"], abort["outcome"]) == ("stuck-transient", "fixed")
    assert bed.node_raw(name)["provision_state"] == "deploy failed"
    # the pending undeploy is verified on the next sweep; its node is left alone until then
    follow = sweeper.sweep(apply=True)
    assert {v["action_id"]: v["outcome"] for v in follow.verified} == {pending: "ineffective"}
