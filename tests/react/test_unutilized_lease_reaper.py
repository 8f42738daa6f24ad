"""unutilized-lease-reaper on the full tier: real Blazar leases of the users' project, a real boot into one of them,
notices through Apprise to a real SMTP server (aiosmtpd), the owner's address from the real Keystone."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from hammersmith.config import Policy
from hammersmith.react.hammers import load
from hammersmith.testbed import blazar, nova
from hammersmith.testbed.faults import USER, USER_PROJECT, Injector
from hammersmith.testbed.ironic import CLOUD_NAME
from tests.conftest import Testbed, hammersmith
from tests.react.crossservice import ledger, outcomes, run
from tests.react.test_notices import Inbox, inbox  # noqa: F401 - the SMTP server fixture
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER, FAULT = "unutilized-lease-reaper", "idle-lease"
GRACE_HOURS = 0.01  # 36 s between the notice and the end
EMAIL = "alice@users.example"


def config(directory: Path, name: str, box: Inbox, hammer: str = HAMMER, **policy: Any) -> Path:
    """`hammer` in apply mode (every other one off), idle after 3.6 s, notices to the inbox in Chicago's zone."""
    hammers = {h: "off" for h in load()} | {hammer: "apply"}
    full = {
        "grace_minutes": 0,
        "hammers": hammers,
        "breaker": {"max_percent": 100},
        "idle_lease_hours": 0.001,
        "idle_lease_grace_hours": GRACE_HOURS,
        **policy,
    }
    notices = {"url": box.url(), "timezone": "America/Chicago", "operators": "ops@testbed.example"}
    site = {"cloud": CLOUD_NAME, "policy": full, "notices": notices}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(directory), "sites": {"full": site}}))
    return path


def lease_of(inj: Injector, node: str) -> dict[str, Any]:
    leases = blazar.client(inj.cloud).get("/leases", params={"all_tenants": True}).json()["leases"]
    return next(lease for lease in leases if lease["name"] == f"idle-{node}")


def boot_into(inj: Injector, node: str, lease: dict[str, Any]) -> str:
    """What a user does with a lease: a server in its reservation's availability zone, as alice; once ACTIVE."""
    conn = inj.user()
    try:
        compute = conn.compute
        server = compute.create_server(
            name=f"experiment-{node}",
            flavor_id=compute.find_flavor(
                nova.flavor_name(inj.bm.get_node(node).resource_class), ignore_missing=False
            ).id,
            image_id=conn.image.find_image(nova.IMAGE, ignore_missing=False).id,
            networks="none",
            availability_zone=f"blazar_{lease['reservations'][0]['id']}",
        )
        compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=180)
        return str(server.id)
    finally:
        conn.close()


def test_unutilized_lease_reaper_stages_told_once_ended_after_the_grace_left_alone_once_used() -> None:
    """The one judgement for detection, re-check and verification, on Blazar's and Ironic's fields."""
    reaper = load()[HAMMER]
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    policy = Policy(idle_lease_hours=6, idle_lease_grace_hours=3)
    lease = {"id": "l1", "status": "ACTIVE", "start_date": "2026-11-30T02:00:00.000000", "end_date": "2026-12-02 02:00"}
    node = {"uuid": "n1", "instance_uuid": None, "provision_updated_at": "2026-11-29T10:00:00+00:00"}

    def judged(told: datetime | None = None, at: datetime = now, **changed: Any) -> str | None:
        return reaper.judge(lease, {"nodes": [node | changed], "servers": [], "told_at": told}, policy, at)

    assert judged() == "no instance on its 1 node(s) since 2026-11-30 02:00 UTC: its owner is to be told"
    assert judged(at=now - timedelta(hours=5)) is None  # idle 5 h: not yet
    assert judged(instance_uuid="a-server") is None
    assert judged(provision_updated_at="2026-11-30T08:00:00+00:00") is None  # torn down 4 h ago: idle since then
    assert judged(told=now - timedelta(hours=1)) is None  # told: the grace runs
    assert (judged(told=now - timedelta(hours=3)) or "").endswith(
        "still idle 3 h after its owner was told: to be ended"
    )
    used = judged(told=now - timedelta(hours=9), provision_updated_at="2026-11-30T05:00:00+00:00")
    assert used is None  # an instance came and went after the notice (7 h ago): left alone, never told twice
    assert reaper.judge(lease | {"end_date": "2026-11-30 11:00"}, {"nodes": [node]}, policy, now) is None  # over


def to_alice(box: Inbox) -> list[str]:
    return [str(message["Subject"]) for rcpt, message in box.messages if rcpt == [EMAIL]]


def test_unutilized_lease_reaper_idle_lease_is_told_once_then_ended_and_a_used_one_is_left_alone(
    full_testbed: Testbed,
    inj: Injector,
    tmp_path: Path,
    inbox: Inbox,  # noqa: F811 - the fixture imported above
) -> None:
    idle_node, used_node = inj.targets(FAULT, 2)
    identity = inj.cloud.identity
    inj.user_project_id()
    alice = identity.find_user(USER, ignore_missing=False)
    identity.update_user(alice, email=EMAIL)
    server = None
    try:
        inj.inject(FAULT, [idle_node, used_node])
        idle, used = lease_of(inj, idle_node), lease_of(inj, used_node)
        server = boot_into(inj, used_node, used)
        key, other = f"lease/{idle['id']}", f"lease/{used['id']}"
        applying = config(tmp_path, "apply", inbox)

        # observe: the notice is previewed (pending, to alice), nothing is sent, the lease is unchanged
        report = run(full_testbed, applying, "sweep")
        found = {f["node"]: f["summary"] for f in report["findings"] if f["check"] == HAMMER}
        assert set(found) == {idle["name"]} and "its owner is to be told" in found[idle["name"]]
        assert outcomes(report)[idle["name"]][:2] == ("observe", "observed")
        assert ledger(full_testbed, applying, key)[0]["reason"].startswith("would notify: no instance")
        pending = json.loads(
            hammersmith("--config", str(applying), "notices", "--pending", "--json", cwd=full_testbed.workdir).stdout
        )
        assert [(n["key"], n["recipients"]) for n in pending] == [(f"lease-idle:{idle['id']}", [EMAIL])]
        assert inbox.messages == []
        assert lease_of(inj, idle_node)["end_date"] == idle["end_date"]

        # an excluded project's lease is refused, with the reason, and nobody is told
        excluded = config(tmp_path, "excluded", inbox, excluded_projects=[USER_PROJECT])
        refused = outcomes(run(full_testbed, excluded, "sweep", "--apply"))[idle["name"]]
        assert refused[1:] == ("refused", f"project {USER_PROJECT} is in policy.excluded_projects")
        assert inbox.messages == []

        # apply: told once however many sweeps run within the grace
        first = run(full_testbed, applying, "sweep", "--apply")
        assert outcomes(first)[idle["name"]][:2] == ("apply", "fixed")
        run(full_testbed, applying, "sweep", "--apply")
        told = to_alice(inbox)
        assert len(told) == 1 and told[0].startswith(f"Your lease {idle['name']} is idle and will be ended at ")
        body = inbox.messages[0][1].get_content()
        assert "America/Chicago" in body and idle["id"] in body

        # after the grace, still idle: ended through Blazar, verified TERMINATED, the owner told why
        time.sleep(GRACE_HOURS * 3600 + 1)
        ended = run(full_testbed, applying, "sweep", "--apply")
        assert outcomes(ended)[idle["name"]][:2] == ("apply", "fixed"), ended
        row = ledger(full_testbed, applying, key)[0]
        assert (row["kind"], row["outcome"]) == ("end-lease", "fixed")
        assert row["before"]["status"] == "ACTIVE" and row["after"]["status"] == "TERMINATED"
        assert lease_of(inj, idle_node)["status"] == "TERMINATED"
        run(full_testbed, applying, "sweep", "--apply")
        assert to_alice(inbox)[1:] == [f"Your lease {idle['name']} was ended"]

        # the lease with an instance: never a finding, never a row, never touched
        assert ledger(full_testbed, applying, other) == []
        assert lease_of(inj, used_node)["status"] == "ACTIVE"
    finally:
        if server is not None:  # Ironic tears the node down and cleans it: available again once the server is gone
            inj.cloud.compute.delete_server(server)
        api = blazar.client(inj.cloud)
        for node in (idle_node, used_node):
            try:
                api.delete(f"/leases/{lease_of(inj, node)['id']}")
            except StopIteration:
                pass
        inj.wait(used_node, "available")
        inj.release(idle_node, used_node)
        identity.update_user(alice, email=None)
