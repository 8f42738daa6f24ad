"""lease-start-reminder on the full tier: a real pending Blazar lease of the users' project, its owner's address from
the real Keystone, the reminder through Apprise to a real SMTP server (aiosmtpd), with Chicago's local time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hammersmith.detect.reservations import blazar_time
from hammersmith.react.notices import shown
from hammersmith.testbed import blazar
from hammersmith.testbed.faults import USER, Injector, user_lease
from tests.conftest import Testbed, hammersmith
from tests.react.crossservice import ledger, outcomes, run
from tests.react.test_notices import Inbox, inbox  # noqa: F401 - the SMTP server fixture
from tests.react.test_unutilized_lease_reaper import EMAIL, config
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER, FAULT = "lease-start-reminder", "lease-starting"
ZONE = "America/Chicago"


def test_lease_start_reminder_owner_is_reminded_once_before_the_lease_starts_in_the_sites_zone(
    full_testbed: Testbed,
    inj: Injector,
    tmp_path: Path,
    inbox: Inbox,  # noqa: F811 - the fixture imported above
) -> None:
    (node,) = inj.targets(FAULT, 1)
    identity = inj.cloud.identity
    inj.user_project_id()
    alice = identity.find_user(USER, ignore_missing=False)
    identity.update_user(alice, email=EMAIL)
    api = blazar.client(inj.cloud)
    made: list[str] = []
    try:
        inj.inject(FAULT, [node])
        leases = api.get("/leases", params={"all_tenants": True}).json()["leases"]
        soon = next(lease for lease in leases if lease["name"] == f"soon-{node}")
        made.append(soon["id"])
        later = user_lease(inj, node, f"later-{node}", start=datetime.now(UTC) + timedelta(hours=30), hours=1.0)
        made.append(later["id"])
        path = config(tmp_path, "reminder", inbox, HAMMER, lease_reminder_hours=4)

        # observe: previewed for alice, nothing sent
        report = run(full_testbed, path, "sweep")
        assert outcomes(report)[soon["name"]][:2] == ("observe", "observed")
        assert later["name"] not in outcomes(report)  # starts in 30 h: not yet
        done = hammersmith("--config", str(path), "notices", "--pending", "--json", cwd=full_testbed.workdir)
        pending = json.loads(done.stdout)
        assert [(n["key"], n["recipients"]) for n in pending] == [(f"lease-starts:{soon['id']}", [EMAIL])]
        assert inbox.messages == []

        # apply: one message, however many sweeps, with the start in UTC and in Chicago's time that day
        assert outcomes(run(full_testbed, path, "sweep", "--apply"))[soon["name"]][:2] == ("apply", "fixed")
        run(full_testbed, path, "sweep", "--apply")
        ((to, message),) = inbox.messages
        start = blazar_time(soon["start_date"])
        assert start is not None
        assert to == [EMAIL] and message["Subject"] == f"Your lease {soon['name']} starts at {start:%Y-%m-%d %H:%M} UTC"
        assert shown(start, ZONE) in message.get_content()  # e.g. "... UTC = ... CST (America/Chicago, UTC-06:00)"
        (row,) = ledger(full_testbed, path, f"lease/{soon['id']}")[:1]
        assert (row["kind"], row["outcome"]) == ("notify", "fixed")
        assert ledger(full_testbed, path, f"lease/{later['id']}") == []
        assert api.get(f"/leases/{soon['id']}").json()["lease"]["status"] == "PENDING"
    finally:
        for lease_id in made:
            api.delete(f"/leases/{lease_id}")
        inj.release(node)
        identity.update_user(alice, email=None)
