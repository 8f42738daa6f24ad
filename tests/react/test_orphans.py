"""orphans on the full tier: a lease whose project, then whose user, is disabled in Keystone is reported with the
reason, and never acted on, even in apply mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from hammersmith.testbed import blazar
from hammersmith.testbed.faults import USER, USER_PROJECT, Injector
from tests.conftest import Testbed
from tests.react.crossservice import config, found, outcomes, run
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER = "orphans"


def test_orphans_leases_of_a_disabled_project_or_user_are_reported_and_left(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    (node,) = inj.pick(1)
    found_node = inj.bm.get_node(node)
    body = blazar.lease_body(f"thesis-run-{node}", found_node.resource_class, node=found_node.id)
    lease = inj.wait_for_lease(inj.user_blazar().post("/leases", json=body).json()["lease"]["id"], "ACTIVE")
    identity = inj.cloud.identity
    project = identity.find_project(USER_PROJECT, ignore_missing=False)
    user = identity.find_user(USER, ignore_missing=False)
    subject = f"lease {lease['name']}"
    path = config(tmp_path, HAMMER, "apply")
    try:
        assert subject not in found(full_testbed, path, HAMMER)
        identity.update_project(project, is_enabled=False)
        assert found(full_testbed, path, HAMMER)[subject] == f"project {USER_PROJECT} is disabled"
        identity.update_project(project, is_enabled=True)
        identity.update_user(user, is_enabled=False)
        assert found(full_testbed, path, HAMMER)[subject] == f"user {USER} is disabled"

        swept = run(full_testbed, path, "sweep", "--apply")
        assert subject in {f["node"] for f in swept["findings"] if f["check"] == HAMMER}
        assert subject not in outcomes(swept)  # reported, never acted on
        assert blazar.client(inj.cloud).get(f"/leases/{lease['id']}").json()["lease"]["status"] == "ACTIVE"
    finally:
        identity.update_project(project, is_enabled=True)
        identity.update_user(user, is_enabled=True)
        blazar.client(inj.cloud).delete(f"/leases/{lease['id']}")
