"""A part-time window against the full tier's real Ironic, Blazar and Alertmanager, driven as an operator does:
a config file with a schedule and `hammersmith sweep`. The window starts a few minutes ahead; before it, its node
stops being reservable across it (a user's lease request overlapping it is refused by Blazar) while a user's lease
ending just before it keeps its end; during it the node is in Ironic maintenance and silenced; after it the node is
back in service (available, not in maintenance, reservable, its maintenance lease gone). Beside it, in a
thread, test_maint's lease-wait scenario runs on another node."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hammersmith.detect.reservations import blazar_time
from hammersmith.testbed import blazar
from hammersmith.testbed.faults import Injector
from hammersmith.testbed.ironic import CLOUD_NAME
from hammersmith.testbed.prometheus import Alertmanager as AlertmanagerServer
from hammersmith.testbed.prometheus import missing_binaries
from tests.conftest import Testbed, hammersmith
from tests.maintenance.test_maint import maint_waits_for_a_users_lease_then_silences_the_node_and_returns_it
from tests.react.test_freepool_consistency import wait_free
from tests.testbed.test_full_tier import INSTALLED

pytestmark = [
    pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server"),
    pytest.mark.skipif("alertmanager" in missing_binaries(), reason="alertmanager is not installed"),
]
AM_CONFIG = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"
SCHEDULE = "lab-loan"
#: how far ahead the window starts, its length, and how far past its start and end the test waits for the next step
LEAD = timedelta(minutes=3)
WINDOW = timedelta(minutes=1)
WAIT_SECONDS = 300


def config(directory: Path, node: str, begins: datetime, ends: datetime, alertmanager_url: str) -> Path:
    """Every hammer off (a sweep only reconciles and advances maintenances); one schedule taking `node` away."""
    from hammersmith.react.hammers import load

    span = {"days": [begins.strftime("%a").lower()], "start": f"{begins:%H:%M}", "end": f"{ends:%H:%M}"}
    site: dict[str, Any] = {
        "cloud": CLOUD_NAME,
        "alertmanager_url": alertmanager_url,
        "policy": {"hammers": {name: "off" for name in load()}},
        "schedules": [{"name": SCHEDULE, "nodes": [node], "timezone": "UTC", "offline": [span], "lead_hours": 1}],
    }
    path = directory / "windows.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(directory), "sites": {"full": site}}))
    return path


def ok(bed: Testbed, path: Path, *args: str) -> Any:
    done = hammersmith("--config", str(path), *args, "--json", cwd=bed.workdir)
    assert done.returncode in (0, 1), done.stderr  # sweep: 1 when it has findings
    return json.loads(done.stdout)


def window_rows(bed: Testbed, path: Path) -> list[dict[str, Any]]:
    """Every maintenance of kind window, newest first, as `hammersmith maint list --all` shows it."""
    return [r for r in ok(bed, path, "maint", "list", "--all") if r["kind"] == "window"]


def sweep_until(bed: Testbed, path: Path, state: str, deadline: float) -> dict[str, Any]:
    """`hammersmith sweep` now and then, until the window's maintenance is in `state`."""
    while True:
        ok(bed, path, "sweep")
        rows = window_rows(bed, path)
        if rows and rows[0]["state"] == state:
            return rows[0]
        assert time.monotonic() < deadline, f"maintenance not {state}: {rows}"
        time.sleep(10)


class Beside(threading.Thread):
    """Another scenario run in a thread beside the test; join() waits for it and raises what it raised."""

    def __init__(self, scenario: Callable[..., None], *args: Any) -> None:
        super().__init__(daemon=True)
        self.scenario, self.args = scenario, args
        self.failure: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.scenario(*self.args)
        except BaseException as exc:  # an assertion too: re-raised in the test's own thread
            self.failure = exc

    def join(self, timeout: float | None = WAIT_SECONDS * 2) -> None:
        super().join(timeout)
        assert not self.is_alive(), f"{self.scenario.__name__} still running after {timeout} s"
        if self.failure is not None:
            raise self.failure


def leases(api: Any, prefix: str) -> list[dict[str, Any]]:
    found = api.get("/leases", params={"all_tenants": True}).json()["leases"]
    return [lease for lease in found if lease["name"].startswith(prefix)]


@pytest.mark.timeout(1500)
def test_a_window_makes_its_node_unreservable_across_it_and_brings_it_back(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    node, other = inj.pick(2)
    # beside this test, on `other`: `maint start` waiting for a user's lease (both are mostly waits for Blazar's
    # clock; run together, the suite waits once)
    (tmp_path / "maint").mkdir()
    beside = Beside(maint_waits_for_a_users_lease_then_silences_the_node_and_returns_it, full_testbed, inj,
                    tmp_path / "maint", other)  # fmt: skip
    ironic = inj.bm.get_node(node)
    api, user = blazar.client(inj.cloud), inj.user_blazar()
    now = datetime.now(UTC)
    begins = now.replace(second=0, microsecond=0) + LEAD
    ends = begins + WINDOW
    # a user's lease ending a minute before the window: it must keep its end
    before_body = blazar.lease_body(
        f"thesis-before-{node}",
        ironic.resource_class,
        hours=(begins - timedelta(minutes=1) - now).total_seconds() / 3600,
        node=ironic.id,
    )
    before = inj.wait_for_lease(user.post("/leases", json=before_body).json()["lease"]["id"], "ACTIVE")
    made = [before["id"]]
    with AlertmanagerServer(tmp_path / "am") as alertmanager:
        alertmanager.start(AM_CONFIG)
        path = config(tmp_path, node, begins, ends, alertmanager.url)
        try:
            # lead_hours covers the window: the first sweep books the node across it, after the user's lease
            ok(full_testbed, path, "sweep")
            (row,) = window_rows(full_testbed, path)
            assert (row["node_name"], row["state"], row["error"]) == (node, "waiting", None)
            assert (row["reason"], row["by"]) == (f"offline as scheduled: {SCHEDULE}", "schedule")
            assert (datetime.fromisoformat(row["start_at"]), datetime.fromisoformat(row["until"])) == (begins, ends)
            (upcoming, *_) = ok(full_testbed, path, "windows", "--days", "1")[0]["windows"]
            assert upcoming["maintenances"] == [{"id": row["id"], "node": node, "state": "waiting", "error": None}]
            (maint,) = leases(api, f"maint-{node}-")
            assert (blazar_time(maint["start_date"]), blazar_time(maint["end_date"])) == (begins, ends)
            kept = api.get(f"/leases/{before['id']}").json()["lease"]
            assert kept["status"] == "ACTIVE" and kept["end_date"] == before["end_date"]

            # a user asking for the node during the window is refused by Blazar itself
            during = blazar.lease_body(
                f"thesis-during-{node}", ironic.resource_class, begins, WINDOW / timedelta(hours=1), node=ironic.id
            )
            refused = user.post("/leases", json=during, raise_exc=False)
            if refused.status_code < 400:
                made.append(refused.json()["lease"]["id"])
            assert refused.status_code >= 400, refused.text

            # a second sweep repeats nothing
            ok(full_testbed, path, "sweep")
            assert len(window_rows(full_testbed, path)) == 1 and len(leases(api, f"maint-{node}-")) == 1

            # the window starts: Ironic maintenance with the schedule's reason, and the node silenced
            deadline = time.monotonic() + (begins - datetime.now(UTC)).total_seconds() + WAIT_SECONDS
            sweep_until(full_testbed, path, "in-maintenance", deadline)
            current = inj.bm.get_node(node)
            assert current.is_maintenance and f"offline as scheduled: {SCHEDULE}" in current.maintenance_reason
            silences = httpx.get(f"{alertmanager.url}/api/v2/silences", timeout=10).json()
            assert any(
                {"name": "node", "value": node, "isRegex": False, "isEqual": True} in s["matchers"]
                and s["status"]["state"] == "active"
                for s in silences
            ), silences
            assert api.get(f"/leases/{before['id']}").json()["lease"]["end_date"] == before["end_date"]

            # the window is over: the next sweeps return the node through `maint end`'s steps
            deadline = time.monotonic() + (ends - datetime.now(UTC)).total_seconds() + WAIT_SECONDS
            done = sweep_until(full_testbed, path, "done", deadline)
            assert done["error"] is None
            back = inj.bm.get_node(node)
            assert (back.is_maintenance, back.provision_state) == (False, "available")
            assert [lease for lease in leases(api, f"maint-{node}-") if lease["status"] != "DELETED"] == []
            inj.wait_reservable(ironic.id, True)
            wait_free(inj, ironic.id)
            after_body = blazar.lease_body(f"thesis-after-{node}", ironic.resource_class, hours=2 / 60, node=ironic.id)
            after = user.post("/leases", json=after_body).json()["lease"]
            made.append(after["id"])
            inj.wait_for_lease(after["id"], "ACTIVE")
        finally:
            beside.join()
            for lease_id in made:
                api.delete(f"/leases/{lease_id}", raise_exc=False)
            for lease in leases(api, f"maint-{node}-"):
                api.delete(f"/leases/{lease['id']}", raise_exc=False)
            if inj.bm.get_node(node).is_maintenance:
                inj.bm.unset_node_maintenance(node)
            inj.wait(node, "available")
            inj.wait_reservable(ironic.id, True)
            wait_free(inj, ironic.id)
            inj.release(node)
