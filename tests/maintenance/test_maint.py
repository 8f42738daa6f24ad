"""`hammersmith maint` against the full tier's real Ironic and Blazar and a real Alertmanager, through the CLI as an
operator runs it: a maintenance waits for a user's lease to end and starts after it (Ironic maintenance only then),
silences the node in Alertmanager and returns it to service; a user's future lease is never overlapped (placed after
it, or refused with the lease and its owner named); an operator's own Ironic maintenance is adopted; a node is
retired."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hammersmith.detect.reservations import blazar_time
from hammersmith.testbed import blazar
from hammersmith.testbed.faults import USER_PROJECT, Injector
from hammersmith.testbed.ironic import CLOUD_NAME
from hammersmith.testbed.prometheus import Alertmanager as AlertmanagerServer
from tests.conftest import Testbed, hammersmith
from tests.react.test_freepool_consistency import wait_free
from tests.react.test_retirement_enforcer import unretire
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
AM_CONFIG = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"
#: how long the test waits for the user lease to end and the maintenance to start
WAIT_SECONDS = 360


def config(directory: Path, alertmanager_url: str | None = None) -> Path:
    """Every hammer off (a sweep only advances maintenances), hammersmith's own account."""
    from hammersmith.react.hammers import load

    site: dict[str, Any] = {"cloud": CLOUD_NAME, "policy": {"hammers": {name: "off" for name in load()}}}
    if alertmanager_url:
        site["alertmanager_url"] = alertmanager_url
    path = directory / "maint.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(directory), "sites": {"full": site}}))
    return path


def cli(bed: Testbed, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return hammersmith("--config", str(path), *args, "--json", cwd=bed.workdir)


def ok(bed: Testbed, path: Path, *args: str) -> Any:
    done = cli(bed, path, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def listed(bed: Testbed, path: Path) -> dict[str, dict[str, Any]]:
    """node name -> its latest maintenance (every state)."""
    rows = ok(bed, path, "maint", "list", "--all")
    return {r["node_name"]: r for r in reversed(rows)}


def lease(inj: Injector, lease_id: str) -> dict[str, Any] | None:
    response = blazar.client(inj.cloud).get(f"/leases/{lease_id}", raise_exc=False)
    return None if response.status_code == 404 else response.json()["lease"]


def ended(inj: Injector, lease_id: str) -> bool:
    """Deleted: gone from Blazar, or on its way out."""
    found = lease(inj, lease_id)
    return found is None or found["status"] in ("DELETED", "DELETING", "TERMINATED")


def silence(url: str, silence_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/api/v2/silence/{silence_id}", timeout=5).json())


def maint_waits_for_a_users_lease_then_silences_the_node_and_returns_it(
    full_testbed: Testbed, inj: Injector, tmp_path: Path, node: str
) -> None:
    """Most of this is waiting for Blazar's clock (a user's lease to end): it runs inside the part-time window
    test's own wait (tests/maintenance/test_windows_full.py), on a node of its own, so the two waits overlap."""
    found = inj.bm.get_node(node)
    api, user = blazar.client(inj.cloud), inj.user_blazar()
    body = blazar.lease_body(f"thesis-run-{node}", found.resource_class, hours=2 / 60, node=found.id)
    held = inj.wait_for_lease(user.post("/leases", json=body).json()["lease"]["id"], "ACTIVE")
    user_end = blazar_time(held["end_date"])
    assert user_end is not None
    ours: str | None = None
    try:
        with AlertmanagerServer(tmp_path / "am") as server:
            server.start(AM_CONFIG)
            path = config(tmp_path, server.url)
            (row,) = ok(
                full_testbed, path, "maint", "start", node, "--reason", "DIMM swap", "--ticket", "OPS-7",
                "--until", "30m", "--by", "alice",
            )  # fmt: skip
            ours = row["lease_id"]
            assert (row["state"], row["kind"], row["by"], row["ticket"]) == ("waiting", "maint", "alice", "OPS-7")
            booked = lease(inj, row["lease_id"])
            assert booked is not None and booked["name"] == f"maint-{node}-{row['id']}"
            assert blazar_time(booked["start_date"]) >= user_end
            assert not inj.bm.get_node(node).is_maintenance

            deadline = time.monotonic() + WAIT_SECONDS
            while (current := listed(full_testbed, path)[node])["state"] == "waiting":
                assert not inj.bm.get_node(node).is_maintenance, "maintenance set while the user's lease held it"
                assert time.monotonic() < deadline, f"still waiting: {current}"
                time.sleep(5)
                ok(full_testbed, path, "sweep")
            assert current["state"] == "in-maintenance", current
            assert datetime.now(UTC) >= user_end
            until = datetime.fromisoformat(current["until"])
            assert inj.bm.get_node(node).maintenance_reason == (
                f"alice: DIMM swap [OPS-7] until {until:%Y-%m-%d %H:%M} UTC"
            )
            made = silence(server.url, current["silence_id"])
            assert made["status"]["state"] == "active"
            assert {(m["name"], m["value"]) for m in made["matchers"]} == {("site", "full"), ("node", node)}
            assert lease(inj, ours)["status"] == "ACTIVE"

            server.stop()  # the return stops where Alertmanager is needed, and resumes there once it is back
            stopped = cli(full_testbed, path, "maint", "end", node, "--by", "bob")
            assert stopped.returncode == 1, stopped.stderr
            (halted,) = json.loads(stopped.stdout)
            assert (halted["state"], halted["step"]) == ("returning", "expire-silence"), halted
            assert server.url in halted["error"] and ended(inj, ours)
            server.start(AM_CONFIG)
            path = config(tmp_path, server.url)
            (done,) = ok(full_testbed, path, "maint", "end", node, "--by", "bob")
            assert (done["state"], done["error"]) == ("done", None)
            back = inj.bm.get_node(node)
            assert (back.provision_state, back.is_maintenance) == ("available", False)
            assert ended(inj, ours)
            assert silence(server.url, current["silence_id"])["status"]["state"] == "expired"

            steps = ok(full_testbed, path, "ledger", "--hammer", "maint", "--node", node)
            kinds = [(s["kind"], s["outcome"]) for s in reversed(steps)]
            assert [k for k, _ in kinds[:4]] == ["request", "lease", "ironic-maintenance", "silence"]
            assert kinds[-7:] == [
                ("end", "succeeded"), ("unset-maintenance", "succeeded"), ("end-lease", "succeeded"),
                ("expire-silence", "failed"), ("expire-silence", "succeeded"), ("smoke", "succeeded"),
                ("done", "succeeded"),
            ]  # fmt: skip
            assert {s["params"]["by"] for s in steps} == {"alice", "bob"}
            shown = ok(full_testbed, path, "maint", "show", node)
            assert shown["id"] == row["id"] and len(shown["steps"]) == len(steps)
    finally:
        for lease_id in (held["id"], ours):
            if lease_id:
                api.delete(f"/leases/{lease_id}", raise_exc=False)
        if inj.bm.get_node(node).is_maintenance:
            inj.bm.unset_node_maintenance(node)
        wait_free(inj, found.id)
        inj.release(node)


def test_maint_never_overlaps_a_future_user_lease_and_adopts_an_operators_maintenance(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    booked, handled = inj.pick(2)
    found = inj.bm.get_node(booked)
    api, user = blazar.client(inj.cloud), inj.user_blazar()
    begins = datetime.now(UTC) + timedelta(minutes=20)
    body = blazar.lease_body(f"course-{booked}", found.resource_class, start=begins, hours=1, node=found.id)
    future = inj.wait_for_lease(user.post("/leases", json=body).json()["lease"]["id"], "PENDING")
    future_start, future_end = blazar_time(future["start_date"]), blazar_time(future["end_date"])
    assert future_start is not None and future_end is not None
    path = config(tmp_path)
    ours: str | None = None
    try:
        refused = cli(full_testbed, path, "maint", "start", booked, "--reason", "firmware", "--until", "40m")
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 1, refused.stdout
        assert f"lease course-{booked}" in said and (USER_PROJECT in said or inj.user_project_id() in said), said
        assert lease(inj, future["id"])["status"] == "PENDING"
        assert listed(full_testbed, path)[booked]["state"] == "cancelled"

        inj.bm.patch_node(booked, [{"op": "add", "path": "/extra/rack", "value": "C4-maint-test"}])  # a batch of one
        (row,) = ok(
            full_testbed,
            path,
            "maint",
            "start",
            "--selector",
            "rack=C4-maint-test",
            "--reason",
            "firmware",
            "--until",
            "3h",
        )
        assert row["node_name"] == booked
        ours = row["lease_id"]
        placed = lease(inj, ours)
        assert placed is not None and row["state"] == "waiting"
        start, end = blazar_time(placed["start_date"]), blazar_time(placed["end_date"])
        assert start is not None and end is not None
        assert start >= future_end and end <= datetime.fromisoformat(row["until"])  # after it, never across it
        assert not inj.bm.get_node(booked).is_maintenance

        (cancelled,) = ok(full_testbed, path, "maint", "end", booked)
        assert cancelled["state"] == "cancelled" and lease(inj, ours) is None
        assert lease(inj, future["id"])["status"] == "PENDING"

        inj.bm.set_node_maintenance(handled, reason="rack move, ask bob")
        ok(full_testbed, path, "sweep")
        adopted = listed(full_testbed, path)[handled]
        assert (adopted["kind"], adopted["state"], adopted["by"]) == ("adopted", "in-maintenance", "unknown")
        assert adopted["reason"] == "rack move, ask bob" and adopted["until"] is None
        table = hammersmith("--config", str(path), "maint", "list", cwd=full_testbed.workdir)
        assert handled in table.stdout and "unknown" in table.stdout
        ok(full_testbed, path, "sweep")  # adopted once, not per sweep
        assert len([r for r in ok(full_testbed, path, "maint", "list") if r["node_name"] == handled]) == 1

        inj.bm.unset_node_maintenance(handled)
        ok(full_testbed, path, "sweep")
        assert listed(full_testbed, path)[handled]["state"] == "done"

        (retired,) = ok(full_testbed, path, "maint", "retire", handled, "--reason", "end of warranty", "--by", "carol")
        assert (retired["kind"], retired["state"], retired["error"]) == ("retire", "done", None)
        gone = inj.bm.get_node(handled)
        assert (gone.is_retired, gone.retired_reason) == (True, "carol: end of warranty")
    finally:
        for lease_id in (future["id"], ours):
            if lease_id:
                api.delete(f"/leases/{lease_id}", raise_exc=False)
        if inj.bm.get_node(handled).is_maintenance:
            inj.bm.unset_node_maintenance(handled)
        if "rack" in inj.bm.get_node(booked).extra:
            inj.bm.patch_node(booked, [{"op": "remove", "path": "/extra/rack"}])
        if inj.bm.get_node(handled).provision_state != "available":  # back from retirement (manageable)
            unretire(inj, handled)
        wait_free(inj, found.id)
        inj.release(booked, handled)
