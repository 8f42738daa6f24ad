"""reserve-and-boot: the host it chooses (pure), and the whole trip through the real CLI on the full tier -- Blazar
lease, Nova boot onto the reserved Ironic node, both deleted, the node available again, step timings reported."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hammersmith import config
from hammersmith.config import Site
from hammersmith.detect import smoke
from hammersmith.detect.reservations import Booking, Reservations
from hammersmith.detect.smoke.reserve_and_boot import choose, custom_class
from hammersmith.testbed import blazar, lifecycle
from tests.conftest import Testbed, hammersmith

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STEPS = ["lease-active", "boot-active", "delete", "lease-end"]


def node(name: str, **fields: Any) -> dict[str, Any]:
    """An Ironic node as `GET /nodes?detail=true` lists it: free unless `fields` say otherwise."""
    return {
        "uuid": f"uuid-{name}",
        "name": name,
        "provision_state": "available",
        "maintenance": False,
        "retired": False,
        "instance_uuid": None,
        "resource_class": "gold",
        "instance_info": {},
        **fields,
    }


def host(name: str, reservable: bool = True) -> dict[str, Any]:
    return {"id": name, "hypervisor_hostname": f"uuid-{name}", "reservable": reservable, "node_type": "gold"}


def flavor(name: str, resource_class: str, public: bool = True) -> dict[str, Any]:
    specs = {f"resources:{custom_class(resource_class)}": "1", "resources:VCPU": "0"}
    return {"id": f"id-{name}", "name": name, "os-flavor-access:is_public": public, "extra_specs": specs}


def test_the_host_chosen_is_reservable_with_a_free_node_and_a_public_flavor() -> None:
    """Every reason to pass a host over, one node each, and the one healthy node left is the one chosen."""
    lease = Booking("someone", "proj", NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    nodes = [
        node("a-maintenance", maintenance=True),
        node("b-retired", retired=True),
        node("c-instance", instance_uuid="a-server"),
        node("d-leased"),
        node("e-not-reservable"),
        node("f-no-flavor", resource_class="silver"),
        node("g-exempt"),
        node("h-healthy"),
        node("i-healthy-too"),
    ]
    hosts = [host(n["name"], reservable=n["name"] != "e-not-reservable") for n in reversed(nodes)]
    flavors = [flavor("private", "silver", public=False), flavor("baremetal.gold", "gold")]
    site = Site.model_validate({"cloud": "x", "policy": {"exempt_nodes": ["g-exempt"]}})
    booked = Reservations({"uuid-d-leased": (lease,)})

    choice = choose(hosts, nodes, flavors, site, booked, NOW)
    assert choice is not None
    assert (choice.label, choice.host["id"], choice.flavor["name"]) == ("h-healthy", "h-healthy", "baremetal.gold")
    assert choose(hosts, nodes, flavors, site, Reservations({}, known=False), NOW) is None  # Blazar unread
    others = [h for h in hosts if h["id"] != "h-healthy"]  # a node Blazar does not list is never reserved
    assert getattr(choose(others, nodes, flavors, site, booked, NOW), "label", None) == "i-healthy-too"
    assert custom_class("baremetal-gold.v2") == "CUSTOM_BAREMETAL_GOLD_V2"


def test_the_expensive_set_reserves_boots_and_leaves_nothing_behind(full_testbed: Testbed) -> None:
    """The expensive set through the CLI as the operator runs it, as hammersmith's own account (never admin):
    deploy-node through its Blazar lease, reserve-and-boot through Blazar and Nova, with its steps reported."""
    cli = hammersmith("smoke", "run", "--set", "expensive", "--json", cwd=full_testbed.workdir, timeout=900)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    run = json.loads(cli.stdout)
    assert [(r["scenario"], r["status"]) for r in run["results"]] == [
        ("deploy-node", "passed"),
        ("reserve-and-boot", "passed"),
    ]
    result = run["results"][1]
    tag = f"hammersmith-smoke-{run['run_id']}"
    (label,) = re.findall(rf"booted {tag} on (\S+) in a Blazar lease", result["message"])

    report = json.loads(Path(run["reports"]["ctrf"]).read_text())
    (test,) = [t for t in report["results"]["tests"] if t["name"] == "reserve-and-boot"]
    assert [(s["name"], s["status"]) for s in test["steps"]] == [(name, "passed") for name in STEPS]
    durations = {s["name"]: s["extra"]["duration"] for s in test["steps"]}
    print(f"\nreserve-and-boot on {label}: {durations} ms, {test['duration']} ms in all")
    assert all(isinstance(ms, int) and ms > 0 for ms in durations.values())
    assert sum(durations.values()) <= test["duration"]
    assert durations["lease-active"] < 60_000  # Blazar's manager starts leases every 10 s
    case = ET.parse(run["reports"]["junit"]).getroot().find("testsuite/testcase[@name='reserve-and-boot']")
    assert case is not None
    properties = {p.get("name"): p.get("value") for p in case.iterfind("properties/property")}
    assert list(properties) == [f"step.{name}" for name in STEPS]
    assert all((value or "").startswith("passed ") for value in properties.values())

    admin = full_testbed.conn.project
    assert [s.name for s in admin.compute.servers(all_projects=True) if s.name == tag] == []
    leases = blazar.client(admin).get("/leases", params={"all_tenants": True}).json()["leases"]
    assert [lease["name"] for lease in leases if lease["name"] == tag] == []
    reserved = full_testbed.conn.baremetal.get_node(label)
    assert reserved.provision_state == "available" and not reserved.instance_id and not reserved.is_maintenance


@pytest.fixture
def server_creation_denied(full_testbed: Testbed) -> Iterator[None]:
    """Nova's own policy refuses to create servers (its API re-reads policy.yaml), restored after."""
    policy = lifecycle.testbed_dir(full_testbed.workdir) / "nova" / "policy.yaml"
    before = policy.read_text() if policy.exists() else ""
    policy.write_text(before + '"os_compute_api:servers:create": "!"\n')
    try:
        yield
    finally:
        policy.write_text(before or "{}\n")


def test_a_boot_nova_refuses_fails_the_scenario_and_still_ends_the_lease(
    full_testbed: Testbed, server_creation_denied: None, tmp_path: Path
) -> None:
    """The `finally` after a failure: the lease that did start is deleted, the node is available again, and the
    report says which step failed."""
    bm = full_testbed.conn.baremetal
    available = {n.name for n in bm.nodes(details=True) if n.provision_state == "available"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OS_CLIENT_CONFIG_FILE", str(full_testbed.workdir / "clouds.yaml"))
        name, site = config.load(full_testbed.workdir / "hammersmith.yaml").site(None)
        run = smoke.run_and_report(name, site, "expensive", tmp_path, only=["reserve-and-boot"])
    (result,) = run.results
    assert result.status == "failed" and result.message and "os_compute_api:servers:create" in result.message
    assert [(s.name, s.status) for s in result.steps] == [("lease-active", "passed"), ("boot-active", "failed")]
    (test,) = json.loads(Path(run.reports["ctrf"]).read_text())["results"]["tests"]
    assert [(s["name"], s["status"]) for s in test["steps"]] == [("lease-active", "passed"), ("boot-active", "failed")]

    leases = blazar.client(full_testbed.conn.project).get("/leases", params={"all_tenants": True}).json()["leases"]
    assert [lease["name"] for lease in leases if lease["name"] == f"{smoke.PREFIX}{run.run_id}"] == []
    assert available <= {n.name for n in bm.nodes(details=True) if n.provision_state == "available"}
