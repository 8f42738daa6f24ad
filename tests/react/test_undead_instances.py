"""undead-instances on the full tier: a node deployed for an instance Nova deleted locally (its nova-compute forced
down) is found, left alone in observe mode, undeployed in apply mode and verified back in the pool; a node with a
live user instance is never a finding."""

from __future__ import annotations

from pathlib import Path

import pytest

from hammersmith.testbed.faults import Injector
from tests.conftest import Testbed
from tests.react.crossservice import config, found, ledger, outcomes, run
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER = "undead-instances"


def test_undead_instances_undead_instance_is_undeployed_and_a_live_one_left_alone(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    undead, alive = inj.bootable(2)  # both are booted onto
    inj.inject("undead-instance", [undead])
    server = inj.boot(alive, f"thesis-run-{alive}")
    gone = inj.bm.get_node(undead).instance_id
    try:
        observe = config(tmp_path, HAMMER, "observe")
        seen = found(full_testbed, observe, HAMMER)
        assert seen[undead] == f"deployed for instance {gone}, which Nova does not have"
        assert alive not in seen

        watched = outcomes(run(full_testbed, observe, "sweep", "--apply"))
        assert watched[undead][:2] == ("observe", "observed") and "would undeploy" in watched[undead][2], watched
        assert inj.bm.get_node(undead).provision_state == "active"

        swept = run(full_testbed, config(tmp_path, HAMMER, "apply"), "sweep", "--apply")
        assert outcomes(swept)[undead][:2] == ("apply", "fixed"), swept
        node = inj.bm.get_node(undead)
        assert (node.provision_state, node.instance_id) == ("available", None)
        assert inj.bm.get_node(alive).instance_id == server.id
        (fixed,) = [r for r in ledger(full_testbed, observe, undead) if r["outcome"] == "fixed"]
        assert fixed["before"]["instance_uuid"] == gone and fixed["after"]["instance_uuid"] is None
        inj.release(undead)
    finally:
        inj.cloud.compute.delete_server(server)
        inj.cloud.compute.wait_for_delete(server, interval=1, wait=180)
        inj.wait(alive, "available")
        inj.release(alive)
