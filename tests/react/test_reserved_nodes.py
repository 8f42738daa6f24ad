"""Reservation-aware safety against the real Blazar of the full tier: a node in an active lease, or in one that starts
within `policy.lease_buffer_minutes`, is left alone whatever its Ironic state, and a Blazar that cannot be read
stops every action on nodes it could own. hammersmith logs in with its least-privilege account (clouds.yaml)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from hammersmith.detect.reservations import UNKNOWN
from hammersmith.testbed import blazar, lifecycle
from hammersmith.testbed.faults import USER_PROJECT, Injector
from hammersmith.testbed.ironic import CLOUD_NAME
from tests.conftest import Testbed, hammersmith
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER = FAULT = "clean-failed"


def config(directory: Path) -> Path:
    """The one hammer that fixes `clean-failed`, in apply mode; no grace period."""
    hammers = {HAMMER: "apply", "error-resetter": "off", "stale-inspection": "off"}
    # the fleet breaker at 100 %: the tests leave clean-failed nodes to each other (8 nodes, 20 % is one action)
    policy = {"grace_minutes": 0, "lease_buffer_minutes": 60, "hammers": hammers, "breaker": {"max_percent": 100}}
    site = {"cloud": CLOUD_NAME, "policy": policy}
    path = directory / "hammersmith.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(directory), "sites": {"full": site}}))
    return path


def run(bed: Testbed, path: Path, *args: str) -> dict[str, Any]:
    done = hammersmith("--config", str(path), *args, "--json", cwd=bed.workdir)
    assert done.returncode in (0, 1), done.stderr
    return dict(json.loads(done.stdout))


def lease(inj: Injector, node: str, start: datetime | None) -> dict[str, Any]:
    """A lease of the node by the users' project, active (start None: now) or pending."""
    found = inj.bm.get_node(node)
    body = blazar.lease_body(f"thesis-run-{node}", found.resource_class, start=start, node=found.id)
    made = inj.user_blazar().post("/leases", json=body).json()["lease"]
    return inj.wait_for_lease(made["id"], "ACTIVE" if start is None else "PENDING")


def test_a_node_in_an_active_or_imminent_lease_is_left_alone_with_its_lease_named(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    reserved, soon, free = inj.targets(FAULT, 3)
    inj.inject(FAULT, [reserved, soon, free])
    active = lease(inj, reserved, None)
    pending = lease(inj, soon, datetime.now(UTC) + timedelta(minutes=30))
    path = config(tmp_path)
    try:
        report = run(full_testbed, path, "check")
        held = report["hands_off"]
        until = datetime.fromisoformat(active["end_date"]).strftime("%Y-%m-%d %H:%M")
        assert held[reserved] == f"reserved by lease {active['name']} (project {USER_PROJECT}) until {until} UTC"
        assert held[soon].startswith(f"lease {pending['name']} (project {USER_PROJECT}) starts at ")
        assert free not in held

        swept = run(full_testbed, path, "sweep", "--apply")
        outcomes = {a["node"]: (a["outcome"], a["reason"]) for a in swept["actions"] if a["mode"] == "apply"}
        assert outcomes[free][0] == "fixed"
        assert outcomes[reserved] == ("refused", held[reserved]) and outcomes[soon] == ("refused", held[soon])
        assert {inj.bm.get_node(n).provision_state for n in (reserved, soon)} == {"clean failed"}
        assert inj.bm.get_node(free).provision_state == "manageable"
    finally:
        api = blazar.client(inj.cloud)
        for made in (active, pending):
            api.delete(f"/leases/{made['id']}")


def test_a_blazar_that_cannot_be_read_stops_every_action(full_testbed: Testbed, inj: Injector, tmp_path: Path) -> None:
    """Blazar down: `check` names every node Blazar could own as unknown and exits 3 (an incomplete snapshot), and
    the sweep refuses the action at its live re-read of Blazar; once Blazar is back the node is nobody's, and is
    fixed."""
    (node,) = inj.targets(FAULT, 1)
    inj.inject(FAULT, [node])
    path = config(tmp_path)
    lifecycle.stop_service(full_testbed.workdir, "blazar")
    try:
        checked = hammersmith("--config", str(path), "check", "--json", cwd=full_testbed.workdir)
        assert checked.returncode == 3 and "snapshot of site 'full' is incomplete: blazar" in checked.stderr
        assert json.loads(checked.stdout)["hands_off"][node] == UNKNOWN
        swept = run(full_testbed, path, "sweep", "--apply")
        (action,) = [a for a in swept["actions"] if a["node"] == node]
        assert (action["outcome"], action["reason"]) == ("refused", UNKNOWN)
        assert inj.bm.get_node(node).provision_state == "clean failed"
    finally:
        lifecycle.start_service(full_testbed.workdir, "blazar")
    swept = run(full_testbed, path, "sweep", "--apply")
    assert node in {a["node"] for a in swept["actions"] if a["outcome"] == "fixed"}, swept
    assert inj.bm.get_node(node).provision_state == "manageable"
