"""dirty-ports against a real Ironic *and* Neutron: VIFs attached through Ironic, their Neutron ports deleted."""

from __future__ import annotations

from collections.abc import Callable

from hammersmith.react.sweep import Sweeper
from hammersmith.testbed import fleet
from tests.conftest import Testbed
from tests.react.conftest import break_nodes, hands_off_nodes, untouched

NEUTRON = True  # this module's bed runs Neutron beside Ironic


def vifs(bed: Testbed, name: str) -> list[str]:
    ports = bed.conn.baremetal.get(f"/ports/detail?node={name}", microversion="1.78").json()["ports"]
    return [p["internal_info"]["tenant_vif_port_id"] for p in ports if p["internal_info"].get("tenant_vif_port_id")]


def test_dirty_ports_detach_stale_vifs_on_every_port(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    one, two = break_nodes(bed, "dirty-port", count=2)
    # the second node gets a second port with its own stale VIF: the hammer must not stop at the first port
    bm = bed.conn.baremetal
    node = bm.get_node(two)
    bm.create_port(
        node_id=node.id,
        address="52:54:00:ff:00:02",
        physical_network="physnet1",
        local_link_connection={"switch_id": "00:11:22:33:44:55", "port_id": "Eth9/2", "switch_info": "sw1"},
    )
    port = bed.conn.network.create_port(network_id=bed.state.network_id, name="second-vif")
    bm.attach_vif_to_node(two, port.id)
    bed.conn.network.delete_port(port.id)
    assert len(vifs(bed, one)) == 1 and len(vifs(bed, two)) == 2
    before = hands_off_nodes(bed)

    sweeper = make_sweeper({"dirty-ports": "apply", "error-resetter": "off"})
    observed = sweeper.sweep(apply=False)
    assert sorted(a["node"] for a in observed.actions if a["outcome"] == "observed") == [one, two]
    assert len(vifs(bed, two)) == 2

    applied = sweeper.sweep(apply=True)
    assert sorted(a["node"] for a in applied.actions if a["outcome"] == "fixed") == [one, two]
    assert vifs(bed, one) == [] and vifs(bed, two) == []
    assert {bm.get_node(n).provision_state for n in (one, two)} == {"available"}
    untouched(before, bed)
    assert [a for a in sweeper.sweep(apply=True).actions if a["hammer"] == "dirty-ports"] == []


def test_error_teardown_through_a_real_neutron_outage(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    (name,) = break_nodes(bed, "error-teardown")
    assert bed.node_raw(name)["provision_state"] == "error"
    result = make_sweeper({"error-resetter": "apply"}).sweep(apply=True)
    assert [a["outcome"] for a in result.actions if a["node"] == name] == ["fixed"]
    fleet.wait_for(bed.conn, [name], {"available"}, 60)  # Neutron is back: the tear down now succeeds


def test_snapshot_reads_neutron_when_the_catalog_has_it(bed: Testbed) -> None:
    from hammersmith.cloud import snapshot
    from hammersmith.cloud.connection import SiteConnection
    from hammersmith.config import Site
    from hammersmith.testbed.ironic import CLOUD_NAME

    bed.conn.network.create_port(network_id=bed.state.network_id, name="listed")
    snap = snapshot.take(SiteConnection("lab", Site(cloud=CLOUD_NAME, page_size=1)))
    assert snap.services["neutron"].status == "ok" and snap.complete("ironic", "neutron")
    ports = snap.data["network_ports"] or []
    assert any(p["name"] == "listed" for p in ports)
    # page_size 1: one request per item plus the last page, for ports and networks; one for floating IPs (none)
    networks = snap.data["networks"] or []
    assert snap.requests["neutron"] == (len(ports) + 1) + (len(networks) + 1) + 1
