"""Pause and resume, `breaker open`, and hands off nodes in hammersmith's own maintenance, against the real Ironic.

A paused hammer still detects and records its findings, but each action it would take is refused with the
pause's reason. Resuming lets the next sweep act. The operator runs the real command line.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from hammersmith.quantify.collectors import load
from hammersmith.quantify.telemetry import LedgerView, Telemetry
from hammersmith.react.sweep import Sweeper
from hammersmith.store import Store, open_store
from hammersmith.store.models import Maintenance
from tests.conftest import Testbed, hammersmith
from tests.quantify.conftest import snapshot
from tests.react.conftest import break_nodes, only, wait_states, write_config

MODES = {"error-resetter": "apply", "clean-failed": "apply"}
USER = getpass.getuser()


def cli(tmp_path: Path, *args: str) -> Any:
    """The real command line against this test's config; its JSON output."""
    result = hammersmith("--config", str(tmp_path / "hammersmith.yaml"), *args, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def metrics(store: Store) -> CollectorRegistry:
    """The hammers collector over what the agent reads from the store once per cycle."""
    telemetry = Telemetry(["lab"])
    telemetry.record(snapshot(), [], LedgerView.read(store, "lab"))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(load()["hammers"](telemetry))
    return registry


def test_a_paused_hammer_records_but_does_not_act_until_resumed(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], tmp_path: Path
) -> None:
    store = make_sweeper(MODES).store
    (errored,) = break_nodes(bed, "error-teardown")
    (unclean,) = break_nodes(bed, "clean-failed")
    paused = cli(tmp_path, "pause", "--hammer", "error-resetter", "--reason", "switch swap", "--until", "2h")
    assert (paused["site"], paused["hammer"], paused["by"], paused["resumed_at"]) == (
        "lab",
        "error-resetter",
        USER,
        None,
    )
    until = datetime.fromisoformat(paused["until"])
    assert timedelta(hours=1, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=2)
    why = f"paused by {USER}: switch swap (until {until.isoformat(timespec='seconds')})"

    swept = cli(tmp_path, "sweep", "--apply")
    refused = only(swept["actions"], errored)
    assert (refused["hammer"], refused["mode"], refused["outcome"], refused["reason"]) == (
        "error-resetter",
        "apply",
        "refused",
        why,
    )
    assert any(f["node"] == errored and f["check"] == "error-resetter" for f in swept["findings"])
    assert only(swept["actions"], unclean)["outcome"] == "fixed"  # another hammer acts while one is paused
    assert bed.node_raw(errored)["provision_state"] == "error"
    assert bed.node_raw(unclean)["provision_state"] == "manageable"
    bed.conn.baremetal.set_node_provision_state(unclean, "provide", wait=True, timeout=60)

    status = cli(tmp_path, "breaker", "status", "--site", "lab")
    assert status["open"] is False
    assert [(p["hammer"], p["reason"], p["by"]) for p in status["pauses"]] == [("error-resetter", "switch swap", USER)]
    registry = metrics(store)
    assert registry.get_sample_value("hammersmith_hammer_paused", {"site": "lab", "hammer": "error-resetter"}) == 1
    assert registry.get_sample_value("hammersmith_hammer_paused", {"site": "lab", "hammer": "clean-failed"}) is None

    resumed = cli(tmp_path, "resume", "--hammer", "error-resetter")
    assert [r["id"] for r in resumed["resumed"]] == [paused["id"]] and resumed["paused"] == []
    assert only(cli(tmp_path, "sweep", "--apply")["actions"], errored)["outcome"] == "fixed"
    wait_states(bed, [errored], {"available"})
    assert (
        metrics(store).get_sample_value("hammersmith_hammer_paused", {"site": "lab", "hammer": "error-resetter"})
        is None
    )

    ledger = cli(tmp_path, "ledger", "--hammer", "pause")
    assert [(r["kind"], r["outcome"], r["agent"], r["params"]["hammer"]) for r in ledger] == [
        ("resume", "recorded", USER, "error-resetter"),
        ("pause", "recorded", USER, "error-resetter"),
    ]


def test_pausing_every_hammer_holds_the_webhook_path_too(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], tmp_path: Path
) -> None:
    sweeper = make_sweeper(MODES)
    (errored,) = break_nodes(bed, "error-teardown")
    cli(tmp_path, "pause", "--reason", "firmware rollout")
    alert = sweeper.act_on("error-resetter", errored)
    assert alert.actions == []
    assert alert.skipped["alert"] == f"refused by the safety layer: paused by {USER}: firmware rollout"
    assert only(sweeper.sweep(apply=True).actions, errored)["outcome"] == "refused"
    assert bed.node_raw(errored)["provision_state"] == "error"
    assert metrics(sweeper.store).get_sample_value("hammersmith_hammer_paused", {"site": "lab", "hammer": "*"}) == 1

    assert len(cli(tmp_path, "resume")["resumed"]) == 1
    assert only(sweeper.act_on("error-resetter", errored).actions, errored)["outcome"] in ("succeeded", "fixed")
    wait_states(bed, [errored], {"available"})


def test_a_node_in_a_managed_maintenance_is_hands_off(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], tmp_path: Path
) -> None:
    sweeper = make_sweeper(MODES)
    (errored,) = break_nodes(bed, "error-teardown")
    uuid = bed.node_raw(errored)["uuid"]
    now = datetime.now(UTC)
    until = now - timedelta(minutes=5)  # overdue already
    with sweeper.store.session() as session:
        row = Maintenance(
            site="lab",
            node_uuid=uuid,
            node_name=errored,
            kind="maint",
            state="in-maintenance",
            reason="DIMM swap",
            by="alice",
            start_at=now,
            until=until,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        maintenance_id = row.id
    why = f"in maintenance #{maintenance_id} by alice: DIMM swap"

    refused = only(cli(tmp_path, "sweep", "--apply")["actions"], errored)
    assert (refused["outcome"], refused["reason"]) == ("refused", why)
    assert sweeper.act_on("error-resetter", errored).skipped["alert"] == f"refused by the safety layer: {why}"
    assert bed.node_raw(errored)["provision_state"] == "error"
    labels = {"site": "lab", "node": errored, "id": str(maintenance_id), "kind": "maint"}
    overdue = metrics(sweeper.store).get_sample_value("hammersmith_maintenance_until_timestamp_seconds", labels)
    assert overdue == until.timestamp()

    with sweeper.store.session() as session:
        session.get_one(Maintenance, maintenance_id).state = "done"
    assert metrics(sweeper.store).get_sample_value("hammersmith_maintenance_until_timestamp_seconds", labels) is None
    assert only(cli(tmp_path, "sweep", "--apply")["actions"], errored)["outcome"] == "fixed"
    wait_states(bed, [errored], {"available"})


def test_pauses_end_at_until_and_resume_ends_only_what_it_names(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        now = datetime.now(UTC)
        store.pause("lab", "error-resetter", "done already", "bob", now - timedelta(minutes=1), now)
        assert store.pauses("lab", now) == []
        later = store.pause("lab", "clean-failed", "BIOS update", "bob", now + timedelta(hours=1), now)
        every = store.pause("lab", "*", "rack move", "carol", None, now)
        assert [p.id for p in store.pauses("lab", now)] == [later.id, every.id]
        assert store.pauses("lab", now + timedelta(hours=2)) == [every]
        assert store.pauses("other", now) == []
        assert [p.id for p in store.resume("lab", "clean-failed", "dave", now)] == [later.id]
        assert [p.hammer for p in store.pauses("lab", now)] == ["*"]
        assert [p.resumed_by for p in store.resume("lab", "*", "dave", now)] == ["dave"]
        assert store.pauses("lab", now) == [] and store.resume("lab", "*", "dave", now) == []
    finally:
        store.close()


def test_unknown_hammer_past_until_and_breaker_open(tmp_path: Path) -> None:
    config = write_config(tmp_path, MODES)
    wrong = hammersmith("--config", str(config), "pause", "--hammer", "error-reseter", "--reason", "x", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "no hammer named 'error-reseter'; known: " in wrong.stderr and "error-resetter" in wrong.stderr
    past = hammersmith("--config", str(config), "pause", "--reason", "x", "--until", "2020-01-01T00:00", cwd=tmp_path)
    assert past.returncode == 2 and "in the past" in past.stderr
    bad = hammersmith("--config", str(config), "pause", "--reason", "x", "--until", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and "is not a time" in bad.stderr

    opened = cli(tmp_path, "breaker", "open", "--site", "lab", "--reason", "storage migration")
    assert opened == {"site": "lab", "opened": True, "reason": f"opened by {USER}: storage migration"}
    again = cli(tmp_path, "breaker", "open", "--site", "lab", "--reason", "another")
    assert again == {"site": "lab", "opened": False, "reason": f"opened by {USER}: storage migration"}
    status = cli(tmp_path, "breaker", "status", "--site", "lab")
    assert (status["open"], status["reason"], status["pauses"]) == (True, f"opened by {USER}: storage migration", [])
    assert cli(tmp_path, "breaker", "reset", "--site", "lab") == {"site": "lab", "reset": True}
