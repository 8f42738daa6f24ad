"""orphan-resource-providers against the full tier's real Placement, Ironic and Nova: a provider named after a node
Ironic does not have is observed, then deleted with the allocation of a consumer Nova does not have, and verified
gone; one holding an allocation of a live server is refused; the nodes' own providers and Blazar's are never
touched. hammersmith logs in with its least-privilege account (clouds.yaml)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from hammersmith.react.hammers import load
from hammersmith.testbed import fleet
from hammersmith.testbed.faults import Injector
from hammersmith.testbed.ironic import CLOUD_NAME
from tests.conftest import Testbed
from tests.react.crossservice import run
from tests.testbed.test_full_tier import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
HAMMER = "orphan-resource-providers"
FAULT = "orphan-resource-provider"
#: the fault's inventory (one unit of the first resource class)
RESOURCES = {f"CUSTOM_{fleet.RESOURCE_CLASSES[0].upper()}": 1}
MICROVERSION = "1.28"


def config(directory: Path) -> Path:
    """This hammer alone, in apply mode; rate and breaker out of the way (other tests' orphans count too)."""
    hammers = {name: "off" for name in load() if name != HAMMER} | {HAMMER: "apply"}
    policy = {
        "grace_minutes": 0,
        "hammers": hammers,
        "rate": {"per_sweep": 100, "per_hour": 1000},
        "breaker": {"max_percent": 100, "max_actions": 100},
    }
    path = directory / "hammersmith.yaml"
    path.write_text(
        yaml.safe_dump({"state_dir": str(directory), "sites": {"full": {"cloud": CLOUD_NAME, "policy": policy}}})
    )
    return path


def allocations(inj: Injector, consumer: str) -> dict[str, Any]:
    response = inj.cloud.placement.get(f"/allocations/{consumer}", microversion=MICROVERSION)
    assert response.status_code == 200, response.text
    return dict(response.json())


def allocate(inj: Injector, consumer: str, provider: str) -> None:
    """One unit of `provider` for `consumer`, beside what the consumer holds already (a new consumer: a made-up one)."""
    held = allocations(inj, consumer)
    body = {
        "allocations": {**held["allocations"], provider: {"resources": RESOURCES}},
        "consumer_generation": held.get("consumer_generation"),
        "project_id": held.get("project_id") or inj.user_project_id(),
        "user_id": held.get("user_id") or uuid.uuid4().hex,
    }
    response = inj.cloud.placement.put(f"/allocations/{consumer}", json=body, microversion=MICROVERSION)
    assert response.status_code == 204, response.text


def test_orphan_resource_providers_orphan_provider_is_deleted_with_its_dead_allocation_and_a_live_servers_is_refused(
    full_testbed: Testbed, inj: Injector, tmp_path: Path
) -> None:
    placement = inj.cloud.placement
    before = {p.id: p.name for p in placement.resource_providers()}
    inj.inject(FAULT, inj.targets(FAULT, 2))
    orphan, held = sorted(p.id for p in placement.resource_providers() if p.id not in before)
    (node,) = inj.pick(1)
    server = inj.boot(node, f"thesis-{node}")
    gone = str(uuid.uuid4())  # a consumer Nova never had: its allocation goes with the provider
    try:
        allocate(inj, gone, orphan)
        allocate(inj, server.id, held)  # a live server's allocation: the provider is left to a human
        path = config(tmp_path)

        observed = run(full_testbed, path, "sweep")
        found = {f["node_uuid"] for f in observed["findings"]}
        assert {f"resource-provider/{orphan}", f"resource-provider/{held}"} <= found
        assert not {f"resource-provider/{p}" for p in before} & found  # nodes' own providers, Blazar's
        outcomes = {a["node_uuid"]: (a["mode"], a["outcome"]) for a in observed["actions"]}
        assert outcomes[f"resource-provider/{orphan}"] == ("observe", "observed")
        assert placement.get_resource_provider(orphan).id == orphan

        applied = run(full_testbed, path, "sweep", "--apply")
        acted = {a["node_uuid"]: a for a in applied["actions"]}
        assert acted[f"resource-provider/{orphan}"]["outcome"] == "fixed", acted
        refused = acted[f"resource-provider/{held}"]
        assert (refused["outcome"], refused["reason"]) == ("refused", f"allocations of live servers: {server.id}")
        assert placement.find_resource_provider(orphan) is None
        assert allocations(inj, gone)["allocations"] == {}
        assert set(allocations(inj, server.id)["allocations"]) >= {held}
        assert {p.id: p.name for p in placement.resource_providers()} == before | {held: held}

        rows = run(full_testbed, path, "ledger", "--hammer", HAMMER, "--node", f"resource-provider/{orphan}")
        assert [(r["mode"], r["outcome"]) for r in rows] == [("apply", "fixed"), ("observe", "observed")]
        assert rows[0]["before"]["name"] == orphan and rows[0]["before"]["consumers"] == {gone: "gone"}
        assert rows[0]["after"] == {"exists": False}
    finally:
        inj.cloud.compute.delete_server(server)
        inj.cloud.compute.wait_for_delete(server, interval=1, wait=120)
        placement.delete(f"/allocations/{gone}", microversion=MICROVERSION)
        for provider in (orphan, held):
            placement.delete_resource_provider(provider, ignore_missing=True)
        inj.release(node)
