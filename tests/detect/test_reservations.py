"""Blazar leases in the must-not-touch rules: pure logic on API-shaped data (hosts, allocations, leases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hammersmith.cloud.snapshot import ServiceRead, Snapshot
from hammersmith.config import Policy
from hammersmith.detect import checks, reservations
from hammersmith.detect.handsoff import hands_off
from hammersmith.detect.reservations import UNKNOWN, blazar_time, from_snapshot, index
from tests.detect.test_rules import NOW, node

HOSTS = [
    {"id": "1", "hypervisor_hostname": "uuid-busy", "reservable": False},
    {"id": "2", "hypervisor_hostname": "uuid-soon", "reservable": True},
    {"id": "3", "hypervisor_hostname": "uuid-later", "reservable": True},
    {"id": "4", "hypervisor_hostname": "uuid-done", "reservable": True},
    {"id": "5", "hypervisor_hostname": "uuid-free", "reservable": True},
]


def blazar(when: datetime) -> str:
    """Blazar's own format: no zone, microseconds (UTC)."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def lease(lease_id: str, name: str, start: datetime, end: datetime, status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "id": lease_id,
        "name": name,
        "project_id": f"project-{name}",
        "start_date": blazar(start),
        "end_date": blazar(end),
        "status": status,
    }


LEASES = [
    lease("l-busy", "busy", NOW - timedelta(hours=1), NOW + timedelta(hours=5)),
    lease("l-soon", "soon", NOW + timedelta(minutes=30), NOW + timedelta(hours=3), "PENDING"),
    lease("l-later", "later", NOW + timedelta(hours=3), NOW + timedelta(hours=6), "PENDING"),
    lease("l-done", "done", NOW - timedelta(hours=6), NOW - timedelta(hours=1), "TERMINATED"),
]
# the allocations API names reservations by id and lease id (some releases add their dates)
ALLOCATIONS = [
    {"resource_id": "1", "reservations": [{"id": "r1", "lease_id": "l-busy"}]},
    {"resource_id": "2", "reservations": [{"id": "r2", "lease_id": "l-soon"}]},
    {"resource_id": "3", "reservations": [{"id": "r3", "lease_id": "l-later"}]},
    {"resource_id": "4", "reservations": [{"id": "r4", "lease_id": "l-done"}]},
    {"resource_id": "5", "reservations": []},
]
POLICY = Policy()


def with_blazar(nodes: list[dict[str, Any]], status: str = "ok") -> Snapshot:
    ok = status == "ok"
    data = {
        "nodes": nodes,
        "ports": [],
        "blazar_hosts": HOSTS if ok else None,
        "host_allocations": ALLOCATIONS if ok else None,
        "leases": LEASES if ok else None,
    }
    services = {"ironic": ServiceRead("ok"), "blazar": ServiceRead(status)}
    return Snapshot("lab", NOW, NOW, data, services)  # type: ignore[arg-type]


def test_active_and_imminent_leases_keep_hands_off_whatever_the_ironic_state() -> None:
    booked = index(HOSTS, ALLOCATIONS, LEASES)
    held = {n: hands_off(node(n), POLICY, reservations=booked, now=NOW) for n in ("busy", "soon", "later", "done")}
    assert held == {
        "busy": "reserved by lease busy (project project-busy) until 2026-11-25 17:00 UTC",
        "soon": "lease soon (project project-soon) starts at 2026-11-25 12:30 UTC (within lease_buffer_minutes)",
        "later": None,  # starts in 3 h, beyond the 60 min buffer
        "done": None,  # terminated: the host is free again
    }
    assert hands_off(node("free"), POLICY, reservations=booked, now=NOW) is None
    assert hands_off(node("soon"), Policy(lease_buffer_minutes=0), reservations=booked, now=NOW) is None
    wide = Policy(lease_buffer_minutes=240)
    assert "lease later" in (hands_off(node("later"), wide, reservations=booked, now=NOW) or "")


def test_a_node_is_found_by_uuid_or_by_name() -> None:
    by_name = index([{"id": "9", "hypervisor_hostname": "busy"}], [ALLOCATIONS[0] | {"resource_id": "9"}], LEASES)
    assert "lease busy" in (hands_off(node("busy"), POLICY, reservations=by_name, now=NOW) or "")


def test_dates_in_the_allocation_win_and_a_reservation_without_dates_is_held() -> None:
    dated = [{"resource_id": "3", "reservations": [{"id": "r3", "lease_id": "l-later", "start_date": blazar(NOW)}]}]
    booked = index(HOSTS, dated, LEASES)
    assert "reserved by lease later" in (hands_off(node("later"), POLICY, reservations=booked, now=NOW) or "")
    undated = index(HOSTS, [{"resource_id": "5", "reservations": [{"id": "r", "lease_id": "gone"}]}], [])
    assert "reserved by lease gone" in (hands_off(node("free"), POLICY, reservations=undated, now=NOW) or "")


def test_blazar_unreadable_fails_closed_and_absent_changes_nothing() -> None:
    nodes = [node("free"), node("busy")]
    assert reservations.of(with_blazar(nodes, "incomplete")).hold(node("free"), NOW, 60) == UNKNOWN
    report = checks.run(with_blazar(nodes, "incomplete"), POLICY)
    assert report.hands_off == {"free": UNKNOWN, "busy": UNKNOWN}
    absent = Snapshot("lab", NOW, NOW, {"nodes": nodes, "ports": []}, {"ironic": ServiceRead("ok")})  # type: ignore[arg-type]
    assert checks.run(absent, POLICY).hands_off == {}
    assert from_snapshot({"blazar_hosts": [], "leases": []}, "ok").known is False  # a listing missing: unknown


#: Keystone's GET /v3/projects, as the snapshot's `projects` listing holds it
PROJECTS = [
    {"id": "project-busy", "name": "CHI-231", "domain_id": "default", "enabled": True, "is_domain": False},
    {"id": "project-soon", "name": "CHI-77", "domain_id": "default", "enabled": True, "is_domain": False},
]


def test_left_alone_names_the_lease_project_by_keystone_name() -> None:
    nodes = [node("busy"), node("soon"), node("free")]
    snap = with_blazar(nodes)
    snap.data["projects"] = PROJECTS
    snap.services["keystone"] = ServiceRead("ok")
    assert checks.run(snap, POLICY).hands_off == {
        "busy": "reserved by lease busy (project CHI-231) until 2026-11-25 17:00 UTC",
        "soon": "lease soon (project CHI-77) starts at 2026-11-25 12:30 UTC (within lease_buffer_minutes)",
    }


def test_a_project_without_a_name_is_shown_by_id() -> None:
    names = {"project-soon": "CHI-77"}  # project-busy unknown to Keystone (or Keystone not read)
    booked = index(HOSTS, ALLOCATIONS, LEASES, names)
    assert hands_off(node("busy"), POLICY, reservations=booked, now=NOW) == (
        "reserved by lease busy (project project-busy) until 2026-11-25 17:00 UTC"
    )
    assert "(project CHI-77)" in (hands_off(node("soon"), POLICY, reservations=booked, now=NOW) or "")
    by_snapshot = from_snapshot({"blazar_hosts": HOSTS, "host_allocations": ALLOCATIONS, "leases": LEASES}, "ok", names)
    assert "(project CHI-77)" in (by_snapshot.hold(node("soon"), NOW, 60) or "")


def test_check_reports_the_lease_under_left_alone() -> None:
    report = checks.run(with_blazar([node("busy"), node("soon"), node("free")]), POLICY)
    assert report.hands_off == {
        "busy": "reserved by lease busy (project project-busy) until 2026-11-25 17:00 UTC",
        "soon": "lease soon (project project-soon) starts at 2026-11-25 12:30 UTC (within lease_buffer_minutes)",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T12:00:00.000000", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30 12:00", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30T13:00:00+01:00", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("", None),
        ("soon", None),
    ],
)
def test_blazar_time(text: str, expected: datetime | None) -> None:
    assert blazar_time(text) == expected
