"""retirement-enforcer against the full tier's real Ironic and Blazar: a node retired in Ironic whose Blazar host is
still reservable is found, observed without a change, then its host is deleted through Blazar's API and verified gone;
a retired node whose host an active lease holds is refused with the lease named, and host and lease stay.
hammersmith logs in with its least-privilege account (clouds.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hammersmith.testbed import blazar
from hammersmith.testbed.faults import USER_PROJECT, Injector
from tests.conftest import Testbed
from tests.react.crossservice import config, found, ledger, outcomes, run
from tests.react.test_freepool_consistency import wait_free
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER = "retirement-enforcer"
FAULT = "retired-reservable"


def host_of(inj: Injector, node_id: str) -> dict[str, Any] | None:
    hosts = blazar.client(inj.cloud).get("/os-hosts").json()["hosts"]
    return next((h for h in hosts if h["hypervisor_hostname"] == node_id), None)


def unretire(inj: Injector, node: str) -> None:
    """Back in service: not retired, cleaned to `available`."""
    inj.bm.patch_node(
        node,
        [{"op": "replace", "path": "/retired", "value": False}, {"op": "remove", "path": "/retired_reason"}],
    )
    inj.bm.set_node_provision_state(node, "provide", wait=False)
    inj.wait(node, "available")


def test_retirement_enforcer_retired_node_leaves_blazar_unless_a_lease_holds_it(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    free, leased = inj.targets(FAULT, 2)
    ids = {name: inj.bm.get_node(name).id for name in (free, leased)}
    others = [n.name for n in inj.bm.nodes() if n.name not in ids]
    api, user = blazar.client(inj.cloud), inj.user_blazar()
    body = blazar.lease_body(f"thesis-run-{leased}", inj.bm.get_node(leased).resource_class, node=ids[leased])
    held = inj.wait_for_lease(user.post("/leases", json=body).json()["lease"]["id"], "ACTIVE")
    enrolled = host_of(inj, ids[free])
    assert enrolled is not None
    path = config(tmp_path, HAMMER, "apply", exempt_nodes=others)
    try:
        inj.inject(FAULT, [free, leased])
        summaries = found(full_testbed, path, HAMMER)
        assert (
            summaries[free] == f"retired (end of warranty, rack C4) but reservable in Blazar as host {enrolled['id']}"
        )
        assert leased in summaries

        observed = outcomes(run(full_testbed, path, "sweep"))
        assert observed[free] == ("observe", "observed", f"would delete-blazar-host: {summaries[free]}")
        mode, outcome, reason = observed[leased]
        assert (mode, outcome) == ("observe", "refused") and f"lease {held['name']} (project {USER_PROJECT})" in reason
        assert host_of(inj, ids[free]) == enrolled
        assert ledger(full_testbed, path, free)[0]["outcome"] == "observed"

        applied = outcomes(run(full_testbed, path, "sweep", "--apply"))
        assert applied[free][:2] == ("apply", "fixed")
        assert applied[leased][:2] == ("apply", "refused") and held["name"] in applied[leased][2]
        assert host_of(inj, ids[free]) is None
        row = ledger(full_testbed, path, free)[0]
        assert (row["outcome"], row["kind"]) == ("fixed", "delete-blazar-host")
        assert row["before"]["blazar_host"]["id"] == enrolled["id"] and "trust_id" not in row["before"]["blazar_host"]
        assert row["before"]["retired"] is True and row["after"]["blazar_host"] is None
        still = host_of(inj, ids[leased])
        assert still is not None and still["reservable"] is True
        assert api.get(f"/leases/{held['id']}").json()["lease"]["status"] == "ACTIVE"
        assert free not in found(full_testbed, path, HAMMER)
    finally:
        api.delete(f"/leases/{held['id']}")
        for name in (free, leased):
            unretire(inj, name)
        if host_of(inj, ids[free]) is None:  # enrolled again the way it was (its extra capabilities)
            api.post("/os-hosts", json={"name": ids[free], "node_type": enrolled["node_type"]})
        for name in (free, leased):
            inj.wait_reservable(ids[name], True)
            wait_free(inj, ids[name])
        inj.release(free, leased)
