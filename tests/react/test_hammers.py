"""Each hammer against the real Ironic: fixed in apply, untouched in observe, hands-off nodes never touched."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from hammersmith.react.hammers import HAMMERS, Action, Hammer
from hammersmith.react.safety import EXTRA_KEY
from hammersmith.react.sweep import Sweeper
from tests.conftest import Testbed, hammersmith, ironic_answers_500
from tests.react.conftest import break_nodes, hands_off_nodes, rebreak, untouched, wait_states


def outcomes(result_actions: list[dict], node: str) -> list[str]:
    return [a["outcome"] for a in result_actions if a["node"] == node]


def test_error_resetter(bed: Testbed, make_sweeper: Callable[..., Sweeper], inbox: tuple[str, list[dict]]) -> None:
    url, messages = inbox
    teardown = break_nodes(bed, "error-teardown")[0]
    deploy = break_nodes(bed, "deploy-failed")[0]
    before = hands_off_nodes(bed)
    sweeper = make_sweeper({"error-resetter": "apply"}, notify=[url])

    observed = sweeper.sweep(apply=False)
    assert outcomes(observed.actions, teardown) == ["observed"] and outcomes(observed.actions, deploy) == ["observed"]
    assert bed.node_raw(teardown)["provision_state"] == "error"
    assert len(messages) == 1 and teardown in messages[0]["message"] and "runbook" in messages[0]["message"]

    applied = sweeper.sweep(apply=True)
    assert outcomes(applied.actions, teardown) == ["fixed"] and outcomes(applied.actions, deploy) == ["fixed"]
    assert {bed.node_raw(n)["provision_state"] for n in (teardown, deploy)} == {"available"}  # verified, not assumed
    untouched(before, bed)
    node = bed.node_raw(teardown)
    assert len(node["extra"][EXTRA_KEY]["error-resetter"]) == 1  # the budget lives on the node too
    (row,) = [r for r in sweeper.store.actions(node=teardown) if r.outcome == "fixed"]
    assert row.before["provision_state"] == "error" and row.after["provision_state"] == "available"
    assert row.verified_at is not None and row.verified_at >= row.started_at
    assert len(messages) == 2  # one message for the applied batch
    sweeper.sweep(apply=True)
    assert len(messages) == 2  # nothing new: no repeat


def test_clean_failed(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    """The testbed's clean-failed is a failed *manual* clean: the node goes back to manageable, not available."""
    (name,) = break_nodes(bed, "clean-failed")
    assert bed.node_raw(name)["target_provision_state"] == "manageable"
    before = hands_off_nodes(bed)
    sweeper = make_sweeper({"clean-failed": "observe", "error-resetter": "off"})
    assert outcomes(sweeper.sweep(apply=True).actions, name) == ["observed"]  # mode observe wins over --apply
    assert bed.node_raw(name)["provision_state"] == "clean failed"
    result = make_sweeper({"clean-failed": "apply", "error-resetter": "off"}).sweep(apply=True)
    assert outcomes(result.actions, name) == ["fixed"]
    (action,) = [a for a in result.actions if a["node"] == name]
    assert action["kind"] == "manage"
    node = bed.node_raw(name)
    assert not node["maintenance"] and node["provision_state"] == "manageable"
    untouched(before, bed)
    bed.conn.baremetal.set_node_provision_state(name, "provide", wait=True, timeout=60)  # back to the pool


def test_clean_failed_after_an_automated_clean_provides_the_node(
    bed: Testbed, make_sweeper: Callable[..., Sweeper]
) -> None:
    (name,) = break_nodes(bed, "clean-failed-automated")
    assert bed.node_raw(name)["target_provision_state"] == "available"
    result = make_sweeper({"clean-failed": "apply", "error-resetter": "off"}).sweep(apply=True)
    (action,) = [a for a in result.actions if a["node"] == name]
    assert (action["kind"], action["outcome"]) == ("manage-provide", "fixed")
    assert action["after"]["provision_state"] == "available"


def test_stuck_transient_aborts_a_hung_deploy(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    (name,) = break_nodes(bed, "stuck-deploying")
    before = hands_off_nodes(bed)
    sweeper = make_sweeper({"stuck-transient": "apply", "error-resetter": "off"})
    assert outcomes(sweeper.sweep(apply=False).actions, name) == ["observed"]
    assert bed.node_raw(name)["provision_state"] == "wait call-back"
    result = sweeper.sweep(apply=True)
    assert outcomes(result.actions, name) == ["fixed"]
    assert bed.node_raw(name)["provision_state"] == "deploy failed"
    untouched(before, bed)
    # the ramdisk "works" again, so the next tests' error-resetter can tear it down and clean it
    bed.conn.baremetal.set_node_maintenance(name, reason="hammersmith testbed: restoring interfaces")
    bed.conn.baremetal.update_node(name, deploy_interface="fake")
    bed.conn.baremetal.unset_node_maintenance(name)


def test_maintenance_doctor_reports_and_never_unsets(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    (name,) = break_nodes(bed, "maintenance-no-reason")
    result = make_sweeper({"maintenance-doctor": "apply", "error-resetter": "off"}).sweep(apply=True)
    assert [f.check for f in result.findings if f.node_name == name] == ["maintenance-doctor"]
    assert outcomes(result.actions, name) == []
    node = bed.node_raw(name)
    assert node["maintenance"] and not node["maintenance_reason"]


def test_stale_inspection_inspects_at_most_k(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    before = hands_off_nodes(bed)
    sweeper = make_sweeper({"stale-inspection": "apply", "error-resetter": "off"}, inspect_per_sweep=1)
    result = sweeper.sweep(apply=True)
    (done,) = [a for a in result.actions if a["outcome"] == "fixed"]
    assert result.deferred["stale-inspection"] >= 10
    assert result.summary()["deferred_by_rate_limit"] == result.deferred
    node = wait_states(bed, [done["node"]], {"available"})[done["node"]]
    assert node["provision_state"] == "available" and bed.node_raw(done["node"])["inspection_finished_at"]
    untouched(before, bed)


def test_chronic_fault_stops_after_the_budget(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], inbox: tuple[str, list[dict]], tmp_path: Path
) -> None:
    url, messages = inbox
    (name,) = break_nodes(bed, "error-teardown")
    sweeper = make_sweeper({"error-resetter": "apply"}, notify=[url], budget={"attempts": 2, "window_days": 7})
    for _ in range(2):
        assert outcomes(sweeper.sweep(apply=True).actions, name) == ["fixed"]
        rebreak(bed, "error-teardown", name)
    result = sweeper.sweep(apply=True)
    assert outcomes(result.actions, name) == ["escalated"]
    node = bed.node_raw(name)
    assert node["maintenance"] and node["provision_state"] == "error"
    assert node["maintenance_reason"].startswith(
        "hammersmith: error-resetter gave up after 2 attempts: Failed to tear down"
    )
    (escalation,) = [m for m in messages if "gave up on" in m["title"]]
    assert name in escalation["title"] and "/runbooks/error-resetter" in escalation["message"]
    again = sweeper.sweep(apply=True)
    assert outcomes(again.actions, name) == ["refused"]  # in hammersmith's maintenance: nothing retries it
    assert len([m for m in messages if "gave up on" in m["title"]]) == 1  # told once
    ledger = hammersmith(
        "--config",
        str(tmp_path / "hammersmith.yaml"),
        "ledger",
        "--node",
        name,
        "--hammer",
        "error-resetter",
        "--since",
        "1h",
        "--json",
        cwd=tmp_path,
    )
    assert ledger.returncode == 0, ledger.stderr
    rows = json.loads(ledger.stdout)
    assert [r["outcome"] for r in rows] == ["refused", "escalated", "fixed", "fixed"]  # newest first
    assert outcomes(sweeper.sweep(apply=True).actions, name) == ["refused"]
    assert len(sweeper.store.actions(node=name, hammer="error-resetter")) == 4  # same refusal: no new row
    assert rows[-1]["before"]["provision_state"] == "error" and rows[-1]["after"] is not None
    assert (
        sweeper.store.attempts(
            site="lab", hammer="error-resetter", node_uuid=node["uuid"], since=result.started_at.replace(year=2000)
        )
        == 2
    )


class BadCall(Hammer):
    """A site's own hammer whose API call the real Ironic rejects."""

    name = "bad-call"

    def __init__(self, target: str, runbook: Path) -> None:
        self.target, self._runbook = target, runbook

    @property
    def runbook(self) -> Path:
        return self._runbook

    def matches(self, node: dict, ports: list[dict], policy: object, now: object) -> str | None:
        return "picked by the test" if node["name"] == self.target else None

    def plan(self, found: object, node: object, ports: object, policy: object) -> list[Action]:
        return [Action(self.name, found.node_uuid, found.node_name, "nonsense", "test")]  # type: ignore[attr-defined]

    def execute(self, conn: object, action: Action, live: object, lease: object) -> None:
        conn.baremetal.set_node_provision_state(action.node_uuid, "no-such-target", wait=False)  # type: ignore


def test_api_error_is_a_failed_attempt_not_a_crash(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], tmp_path: Path
) -> None:
    target = sorted(n.name for n in bed.conn.baremetal.nodes() if n.provision_state == "available")[-1]
    (tmp_path / "bad-call.md").write_text("# bad-call\n")
    HAMMERS["bad-call"] = BadCall(target, tmp_path / "bad-call.md")
    try:
        sweeper = make_sweeper({"bad-call": "apply", "error-resetter": "off"})
        result = sweeper.sweep(apply=True)
    finally:
        del HAMMERS["bad-call"]
    (action,) = [a for a in result.actions if a["hammer"] == "bad-call"]
    assert action["outcome"] == "failed" and "no-such-target" in action["reason"]
    uuid = bed.node_raw(target)["uuid"]
    assert (
        sweeper.store.attempts(
            site="lab", hammer="bad-call", node_uuid=uuid, since=result.started_at.replace(year=2000)
        )
        == 1
    )


def test_incomplete_snapshot_means_no_action(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    (name,) = break_nodes(bed, "deploy-failed")
    sweeper = make_sweeper({"error-resetter": "apply"})
    with ironic_answers_500(bed):
        result = sweeper.sweep(apply=True)
    assert result.actions == [] and result.findings == []
    assert set(result.skipped) == {
        "error-resetter",
        "clean-failed",
        "dirty-ports",
        "stuck-transient",
        "maintenance-doctor",
    }
    assert all(why == "incomplete snapshot for ironic" for why in result.skipped.values())
    assert bed.node_raw(name)["provision_state"] == "deploy failed"
    assert outcomes(sweeper.sweep(apply=True).actions, name) == ["fixed"]  # data complete again: fixed
