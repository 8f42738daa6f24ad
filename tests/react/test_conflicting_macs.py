"""conflicting-macs on the full tier: a leftover Neutron port on the provisioning network holding a node's MAC is
found, left in observe mode, deleted in apply mode (verified gone), and left alone on a node in an active lease."""

from __future__ import annotations

from pathlib import Path

import pytest

from hammersmith.testbed import blazar
from hammersmith.testbed.faults import Injector
from tests.conftest import Testbed
from tests.react.crossservice import config, found, ledger, outcomes, run
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER = "conflicting-macs"


def leftovers(inj: Injector, node: str) -> list[str]:
    return [p.id for p in inj.cloud.network.ports(name=f"leftover-{node}")]


def test_conflicting_macs_leftover_port_is_deleted_unless_its_node_is_leased(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    free, leased = inj.targets("conflicting-mac", 2)
    inj.inject("conflicting-mac", [free, leased])
    node = inj.bm.get_node(leased)
    body = blazar.lease_body(f"thesis-run-{leased}", node.resource_class, node=node.id)
    lease = inj.wait_for_lease(inj.user_blazar().post("/leases", json=body).json()["lease"]["id"], "ACTIVE")
    networks = {"provisioning_networks": ["provisioning"]}
    try:
        observe = config(tmp_path, HAMMER, "observe", **networks)
        seen = found(full_testbed, observe, HAMMER)
        (port,) = leftovers(inj, free)
        assert seen[free].startswith("Neutron port(s) on a provisioning network hold its MAC: ") and port in seen[free]
        assert found(full_testbed, config(tmp_path, HAMMER, "observe"), HAMMER) == {}  # no networks configured

        watched = outcomes(run(full_testbed, observe, "sweep", "--apply"))
        assert watched[free][:2] == ("observe", "observed") and leftovers(inj, free) == [port]

        swept = outcomes(run(full_testbed, config(tmp_path, HAMMER, "apply", **networks), "sweep", "--apply"))
        assert swept[free][:2] == ("apply", "fixed") and leftovers(inj, free) == []
        assert swept[leased][:2] == ("apply", "refused") and "reserved by lease" in swept[leased][2]
        assert len(leftovers(inj, leased)) == 1
        (fixed,) = [r for r in ledger(full_testbed, observe, free) if r["outcome"] == "fixed"]
        assert fixed["params"] == {"ports": [port]}
        inj.release(free)
    finally:
        blazar.client(inj.cloud).delete(f"/leases/{lease['id']}")
        for port in leftovers(inj, leased):
            inj.cloud.network.delete_port(port)
        inj.release(leased)
