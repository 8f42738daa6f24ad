"""freepool-consistency against the full tier's real Nova and Blazar: a host no lease holds, taken out of Blazar's free
pool, is found, observed without a change, then returned through Nova's aggregate API, verified, and Blazar leases it
again; a host of an active lease that is in the free pool too is reported and left alone. hammersmith logs in with its
least-privilege account (clouds.yaml)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hammersmith.errors import TestbedError
from hammersmith.testbed import blazar
from hammersmith.testbed.faults import WAIT_TIMEOUT, Injector
from tests.conftest import Testbed
from tests.react.crossservice import config, found, ledger, outcomes, run
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER = "freepool-consistency"


def pools(inj: Injector, node_id: str) -> set[str]:
    """The names of Nova's aggregates holding the node's compute host."""
    host = inj.compute_host(node_id)
    return {a.name for a in inj.cloud.compute.aggregates() if host in (a.hosts or [])}


def wait_free(inj: Injector, node_id: str) -> None:
    """Until the host is in the free pool alone: Blazar moves it back when a lease ends or is deleted."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while (held := pools(inj, node_id)) != {blazar.FREEPOOL}:
        if time.monotonic() > deadline:
            raise TestbedError(f"host of node {node_id} is in {sorted(held)}, not in the free pool alone")
        time.sleep(1.0)


def delete_leases(inj: Injector, *names: str) -> None:
    api = blazar.client(inj.cloud)
    for lease in api.get("/leases", params={"all_tenants": True}).json()["leases"]:
        if lease["name"] in names:
            api.delete(f"/leases/{lease['id']}")


def test_freepool_consistency_free_host_returns_to_the_free_pool_and_a_leased_one_is_left_alone(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    missing, leased = inj.targets("freepool-missing-host", 2)
    ids = {name: inj.bm.get_node(name).id for name in (missing, leased)}
    others = [n.name for n in inj.bm.nodes() if n.name not in ids]
    path = config(tmp_path, HAMMER, "apply", exempt_nodes=others)
    again = f"again-{missing}"
    try:
        inj.inject("freepool-missing-host", [missing])
        inj.inject("freepool-extra-host", [leased])
        lease_pools = pools(inj, ids[leased])
        assert pools(inj, ids[missing]) == set() and blazar.FREEPOOL in lease_pools and len(lease_pools) == 2
        host = inj.compute_host(ids[missing])

        summaries = found(full_testbed, path, HAMMER)
        assert (
            summaries[missing] == f"host {host} (no active lease): not in the free pool: its next lease fails to start"
        )
        assert summaries[leased].endswith("of an active lease: in the free pool too: offered to every project")

        observed = run(full_testbed, path, "sweep")
        assert outcomes(observed)[missing] == ("observe", "observed", f"would return-to-freepool: {summaries[missing]}")
        assert leased not in outcomes(observed)  # reported only: nothing planned on a leased host
        assert pools(inj, ids[missing]) == set()
        assert ledger(full_testbed, path, missing)[0]["outcome"] == "observed"

        applied = run(full_testbed, path, "sweep", "--apply")
        assert outcomes(applied)[missing][:2] == ("apply", "fixed") and leased not in outcomes(applied)
        assert pools(inj, ids[missing]) == {blazar.FREEPOOL}
        assert pools(inj, ids[leased]) == lease_pools
        row = ledger(full_testbed, path, missing)[0]
        assert (row["outcome"], row["kind"]) == ("fixed", "return-to-freepool")
        assert (row["before"]["aggregates"], row["after"]["aggregates"]) == ([], [blazar.FREEPOOL])
        assert ledger(full_testbed, path, leased) == []

        # Blazar leases the host again: its start moves it out of the free pool into the lease's aggregate
        node_type = inj.bm.get_node(missing).resource_class
        body = blazar.lease_body(again, node_type, node=ids[missing])
        made = inj.user_blazar().post("/leases", json=body).json()["lease"]
        active = inj.wait_for_lease(made["id"], "ACTIVE")
        assert pools(inj, ids[missing]) == {active["reservations"][0]["id"]}
    finally:
        if blazar.FREEPOOL in pools(inj, ids[leased]) and len(pools(inj, ids[leased])) > 1:
            freepool = inj.cloud.compute.find_aggregate(blazar.FREEPOOL, ignore_missing=False)
            inj.cloud.compute.remove_host_from_aggregate(freepool, inj.compute_host(ids[leased]))
        delete_leases(inj, again, f"experiment-{leased}")
        if not pools(inj, ids[missing]):
            freepool = inj.cloud.compute.find_aggregate(blazar.FREEPOOL, ignore_missing=False)
            inj.cloud.compute.add_host_to_aggregate(freepool, inj.compute_host(ids[missing]))
        for name in (missing, leased):
            wait_free(inj, ids[name])
        inj.release(missing, leased)
