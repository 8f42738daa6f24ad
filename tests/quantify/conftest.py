"""Snapshots shaped like the real APIs' answers, for the collectors' unit tests (pure logic, no service)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hammersmith.cloud.snapshot import ServiceRead, Snapshot

LISTINGS_BY_SERVICE = {
    "ironic": ("nodes", "ports", "allocations"),
    "nova": ("servers",),
    "neutron": ("network_ports", "floating_ips"),
    "placement": ("resource_providers",),
    "blazar": ("blazar_hosts", "host_allocations", "leases"),
    "keystone": ("projects",),
}


def node(name: str, state: str = "available", **fields: Any) -> dict[str, Any]:
    return {
        "uuid": f"uuid-{name}",
        "name": name,
        "provision_state": state,
        "power_state": "power off",
        "maintenance": False,
        "maintenance_reason": None,
        "console_enabled": False,
        "resource_class": "baremetal",
        "driver_info": {"deploy_kernel": "k", "deploy_ramdisk": "r"},
        "retired": False,
        "retired_reason": None,
        "last_error": None,
        "provision_updated_at": "2026-11-25T10:00:00+00:00",
        "created_at": "2026-11-01T00:00:00+00:00",
        "instance_info": {},
        "instance_uuid": None,
        "lessee": None,
        "owner": None,
        "reservation": None,
        "extra": {},
        "updated_at": "2026-11-25T10:00:00+00:00",
        **fields,
    }


def snapshot(
    site: str = "lab", incomplete: tuple[str, ...] = (), age_seconds: float = 0, **data: list[dict[str, Any]]
) -> Snapshot:
    """A snapshot with the given listings; services without listings are absent, `incomplete` ones failed."""
    finished = datetime.now(UTC) - timedelta(seconds=age_seconds)
    services: dict[str, ServiceRead] = {}
    listings: dict[str, list[dict[str, Any]] | None] = {}
    for service, names in LISTINGS_BY_SERVICE.items():
        if service in incomplete:
            services[service] = ServiceRead("incomplete", f"{service}: HTTP 503")
            listings.update({n: None for n in names})
        elif any(n in data for n in names) or service == "ironic":
            services[service] = ServiceRead("ok", seconds=0.1)
            listings.update({n: data.get(n, []) for n in names})
        else:
            services[service] = ServiceRead("absent")
    return Snapshot(site, finished - timedelta(seconds=0.5), finished, listings, services, {"ironic": 3})
