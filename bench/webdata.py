"""Benchmark-only data: a state store as a year of operation leaves it, and a big site's last snapshot.

The dashboard's pages read the store (sweeps every minute for a year, the ledger, findings, incidents,
maintenances, probe and smoke results, status posts) and the agent's last in-memory snapshot of each site.
Both are made here synthetically, with the shapes the real code writes and the APIs answer, so the pages are
measured against the volume they will meet rather than a test's handful of rows. Rows are written in bulk with
SQLAlchemy core `insert()` (1.2 million rows in about 50 s), not one Store method call per row, and the store is
cached under a temp directory keyed by VERSION and the parameters, so a rerun starts in seconds. Never use this
outside bench/.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from seed import mac, node_name  # bench/ is the script directory: the same names as the seeded Ironic's
from sqlalchemy import insert

from hammersmith.cloud.snapshot import ServiceRead, Snapshot
from hammersmith.detect.probes import BUILTIN as PROBES
from hammersmith.react import runbooks
from hammersmith.react.hammers import NODE_FIELDS
from hammersmith.store import Store, open_store
from hammersmith.store.models import (
    Action,
    DetectResult,
    Finding,
    Incident,
    IncidentEvent,
    Maintenance,
    StatusPost,
    Sweep,
)

#: bump when what is generated changes: a cached store of another version is rebuilt, never reused
VERSION = 3
BATCH = 20_000
SWEEP_SECONDS = 60
PROBE_SECONDS = 60
RESULTS_DAYS = 90
FINDINGS_DAYS = 30
CHEAP_SMOKE = ("token_issue", "list_nodes", "network_port")
EXPENSIVE_SMOKE = ("deploy_node", "reserve_and_boot")
RESOURCE_CLASSES = (
    ("compute_skylake", 0.40),
    ("compute_cascadelake", 0.25),
    ("compute_icelake", 0.15),
    ("gpu_rtx_6000", 0.08),
    ("gpu_a100_pcie", 0.04),
    ("storage_hdd", 0.05),
    ("fpga", 0.03),
)
#: the fleet's provision states now, by share; what is left over is `available`
STATES = (
    ("active", 0.62),
    ("manageable", 0.03),
    ("cleaning", 0.015),
    ("deploying", 0.01),
    ("wait call-back", 0.004),
    ("clean failed", 0.005),
    ("deploy failed", 0.003),
    ("error", 0.003),
    ("inspecting", 0.002),
    ("enroll", 0.003),
)
#: node hammers in the ledger: (name, action kind, weight, the state it finds, the state it leaves when fixed)
LEDGER_HAMMERS = (
    ("error-resetter", "undeploy", 30, "error", "available"),
    ("clean-failed", "provide", 20, "clean failed", "available"),
    ("stuck-transient", "abort", 12, "wait call-back", "available"),
    ("dirty-ports", "vif-detach", 12, "available", "available"),
    ("maintenance-doctor", "maintenance-reason", 6, "manageable", "manageable"),
    ("stale-inspection", "abort", 4, "inspect wait", "manageable"),
    ("undead-instances", "delete", 4, "active", "available"),
    ("conflicting-macs", "delete-ports", 2, "available", "available"),
    ("freepool-consistency", "return-to-freepool", 4, "available", "available"),
    ("retirement-enforcer", "delete-blazar-host", 2, "manageable", "manageable"),
    ("unutilized-lease-reaper", "end-lease", 2, "active", "active"),
    ("lease-start-reminder", "notify", 2, "active", "active"),
)
#: (outcome, weight): what a year of sweeps leaves in the ledger
OUTCOMES = (
    ("observed", 38),
    ("fixed", 34),
    ("refused", 10),
    ("ineffective", 3),
    ("failed", 3),
    ("escalated", 2),
    ("unverified", 2),
    ("reconciled", 1),
)
REFUSALS = (
    "rate limit: error-resetter made 10 actions in the last hour (per_hour 10)",
    "node is locked by agent lab-2 (conductor reservation)",
    "hands off: node has an instance of a user's lease",
    "budget: 3 attempts in 24 h; escalated instead",
    "grace: node entered error 4 min ago (grace 10 min)",
)
ERRORS = (
    "Failed to tear down. Error: Unable to connect to neutron: timed out",
    "Deploy step deploy.deploy failed: image download timed out after 1800 s",
    "Clean step bios.apply_configuration failed: HTTP 500 from the BMC",
    "Timeout reached while waiting for callback for node",
)
MAINT_REASONS = (
    "DIMM errors on slot B2, vendor ticket open",
    "disk replacement (sdb SMART failures)",
    "BMC firmware upgrade",
    "PSU swap, redundant supply failed",
    "NIC flapping on eth1; cable reseated, watching",
)
POST_BODY = "We are investigating. Running leases are not affected; new deploys may fail.\n\nNext update in 1 h."
STATUS_TITLES = (
    ("Bare metal deploys failing", "degraded"),
    ("Scheduled network maintenance", "maintenance"),
    ("Keystone outage", "down"),
    ("Lease creation slow", "degraded"),
    ("New GPU nodes available", "info"),
)


@dataclass(frozen=True)
class Fleet:
    """A site's nodes: the same UUIDs and names in the store's rows and in the snapshot."""

    site: str
    uuids: tuple[str, ...]
    names: tuple[str, ...]


def fleet(site: str, size: int) -> Fleet:
    rng = random.Random(f"fleet:{site}:{size}")
    uuids = tuple(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(size))
    return Fleet(site, uuids, tuple(node_name(i) for i in range(1, size + 1)))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(at: datetime) -> str:
    return at.isoformat()


def _blazar(at: datetime) -> str:
    """Blazar's own format: no offset, microseconds."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...], rest: str | None = None) -> str:
    x = rng.random()
    for value, share in weighted:
        if x < share:
            return value
        x -= share
    return rest if rest is not None else weighted[-1][0]


# -- the snapshot --------------------------------------------------------------------------------------


def snapshot(nodes: Fleet, now: datetime) -> Snapshot:
    """The agent's last snapshot of a 10,000-node site: every listing the pages may join a node with."""
    rng = random.Random(f"snapshot:{nodes.site}:{len(nodes.uuids)}")
    size = len(nodes.uuids)
    projects = [{"id": uuid.UUID(int=rng.getrandbits(128)).hex, "name": f"CHI-{230000 + i}"} for i in range(300)]
    users = [{"id": uuid.UUID(int=rng.getrandbits(128)).hex, "name": f"user{i:04d}"} for i in range(800)]
    networks = [{"id": _uuid(rng), "name": "sharednet1", "shared": True, "project_id": projects[0]["id"]}]
    networks += [
        {"id": _uuid(rng), "name": f"net-{i}", "shared": False, "project_id": p["id"]} for i, p in enumerate(projects)
    ]
    born = now - timedelta(days=900)
    data: dict[str, list[dict[str, Any]]] = {k: [] for k in ("nodes", "ports", "allocations", "servers")}
    data |= {k: [] for k in ("network_ports", "floating_ips", "resource_providers", "blazar_hosts")}
    data |= {k: [] for k in ("host_allocations", "leases", "aggregates", "blazar_floatingips")}
    freepool: list[str] = []
    active: list[tuple[str, str, str]] = []  # (node uuid, host id, resource class)
    for i, (node_uuid, name) in enumerate(zip(nodes.uuids, nodes.names, strict=True)):
        state = _pick(rng, STATES, "available")
        rc = _pick(rng, RESOURCE_CLASSES)
        maintenance = rng.random() < 0.025
        retired = rng.random() < 0.01
        project = rng.choice(projects)["id"]
        server_id = _uuid(rng) if state == "active" else None
        updated = now - timedelta(minutes=rng.randint(1, 60 * 24 * 30))
        data["nodes"].append(
            {
                "uuid": node_uuid,
                "name": name,
                "driver": "ipmi",
                "provision_state": state,
                "target_provision_state": "active" if state in ("deploying", "wait call-back") else None,
                "power_state": "power on" if state != "manageable" else "power off",
                "target_power_state": None,
                "maintenance": maintenance,
                "maintenance_reason": rng.choice(MAINT_REASONS) if maintenance else None,
                "fault": None,
                "console_enabled": rng.random() < 0.9,
                "resource_class": rc,
                "conductor_group": "",
                "conductor": f"ironic-conductor-{i % 3}",
                "driver_info": {"ipmi_address": f"10.{20 + i // 60000}.{i // 250 % 240}.{i % 250 + 1}"},
                "properties": {"cpus": 48, "memory_mb": 196608, "local_gb": 240, "cpu_arch": "x86_64"},
                "retired": retired,
                "retired_reason": "end of warranty" if retired else None,
                "last_error": rng.choice(ERRORS) if state in ("error", "deploy failed", "clean failed") else None,
                "provision_updated_at": _iso(updated),
                "inspection_finished_at": _iso(born + timedelta(days=rng.randint(0, 60))),
                "created_at": _iso(born),
                "updated_at": _iso(updated),
                "instance_info": {"image_source": _uuid(rng)} if server_id else {},
                "instance_uuid": server_id,
                "lessee": project if server_id else None,
                "owner": None,
                "reservation": None,
                "extra": {},
                "traits": [],
            }
        )
        vif = _uuid(rng) if server_id else None
        address = mac(i + 1)
        data["ports"].append(
            {
                "uuid": _uuid(rng),
                "address": address,
                "node_uuid": node_uuid,
                "pxe_enabled": True,
                "physical_network": "physnet1",
                "local_link_connection": {"switch_id": "a4:bf:01:00:00:01", "port_id": f"Ethernet{i % 48 + 1}/1"},
                "internal_info": {"tenant_vif_port_id": vif} if vif else {},
                "extra": {},
                "created_at": _iso(born),
                "updated_at": _iso(updated),
            }
        )
        host_id = str(i + 1)
        data["blazar_hosts"].append(
            {
                "id": host_id,
                "hypervisor_hostname": node_uuid,
                "service_name": "ironic-compute",
                "reservable": not retired and not maintenance,
                "node_name": name,
                "node_type": rc,
                "cpu_info": "Intel Xeon",
                "created_at": _blazar(born),
                "updated_at": None,
            }
        )
        data["resource_providers"].append(
            {
                "uuid": node_uuid,
                "name": node_uuid,
                "generation": rng.randint(1, 400),
                "parent_provider_uuid": None,
                "root_provider_uuid": node_uuid,
            }
        )
        if server_id is None:
            if state == "available":
                freepool.append(node_uuid)
            continue
        active.append((node_uuid, host_id, rc))
        user = rng.choice(users)["id"]
        network = rng.choice(networks)
        ip = f"10.{140 + i // 65000}.{i // 250 % 250}.{i % 250 + 2}"
        data["allocations"].append(
            {
                "uuid": _uuid(rng),
                "name": server_id,
                "node_uuid": node_uuid,
                "resource_class": rc,
                "state": "active",
                "traits": [],
                "candidate_nodes": [],
                "owner": project,
                "last_error": None,
            }
        )
        data["servers"].append(
            {
                "id": server_id,
                "name": f"exp-{i}",
                "status": "ACTIVE",
                "tenant_id": project,
                "user_id": user,
                "OS-EXT-SRV-ATTR:hypervisor_hostname": node_uuid,
                "OS-EXT-SRV-ATTR:host": "nova-compute-ironic",
                "OS-EXT-STS:vm_state": "active",
                "OS-EXT-STS:task_state": None,
                "OS-EXT-STS:power_state": 1,
                "created": _iso(updated),
                "updated": _iso(updated),
                "flavor": {"original_name": "baremetal", "vcpus": 1, "ram": 1, "disk": 0},
                "image": {"id": _uuid(rng)},
                "addresses": {network["name"]: [{"addr": ip, "version": 4, "OS-EXT-IPS-MAC:mac_addr": address}]},
                "metadata": {},
                "key_name": "mykey",
            }
        )
        data["network_ports"].append(
            {
                "id": vif,
                "name": "",
                "network_id": network["id"],
                "mac_address": address,
                "device_id": server_id,
                "device_owner": "compute:nova",
                "binding:host_id": node_uuid,
                "binding:vnic_type": "baremetal",
                "status": "ACTIVE",
                "fixed_ips": [{"subnet_id": network["id"], "ip_address": ip}],
                "project_id": project,
            }
        )
    for network in networks:  # DHCP and router ports
        for owner in ("network:dhcp", "network:router_interface"):
            data["network_ports"].append(
                {
                    "id": _uuid(rng),
                    "name": "",
                    "network_id": network["id"],
                    "mac_address": "fa:16:3e:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3)),
                    "device_id": _uuid(rng),
                    "device_owner": owner,
                    "binding:host_id": "neutron-net-1",
                    "binding:vnic_type": "normal",
                    "status": "ACTIVE",
                    "fixed_ips": [],
                    "project_id": network["project_id"],
                }
            )
    for k in range(size // 16):
        bound = rng.random() < 0.7 and data["network_ports"]
        data["floating_ips"].append(
            {
                "id": _uuid(rng),
                "floating_ip_address": f"192.5.{86 + k // 250}.{k % 250 + 2}",
                "port_id": rng.choice(data["network_ports"])["id"] if bound else None,
                "project_id": rng.choice(projects)["id"],
                "status": "ACTIVE" if bound else "DOWN",
            }
        )
    rng.shuffle(active)
    while active:  # active nodes held by leases of 1 to 8 hosts
        n = rng.randint(1, 8)
        held, active = active[:n], active[n:]
        lease_id, reservation_id = _uuid(rng), _uuid(rng)
        start = now - timedelta(hours=rng.randint(1, 24 * 7))
        data["leases"].append(
            {
                "id": lease_id,
                "name": f"lease-{len(data['leases'])}",
                "project_id": rng.choice(projects)["id"],
                "user_id": rng.choice(users)["id"],
                "start_date": _blazar(start),
                "end_date": _blazar(start + timedelta(days=7)),
                "status": "ACTIVE",
                "degraded": False,
                "reservations": [
                    {
                        "id": reservation_id,
                        "lease_id": lease_id,
                        "resource_type": "physical:host",
                        "status": "active",
                        "min": len(held),
                        "max": len(held),
                        "hypervisor_properties": "",
                        "resource_properties": json.dumps(["==", "$node_type", held[0][2]]),
                    }
                ],
            }
        )
        for _, host_id, _ in held:
            booked = {"id": reservation_id, "lease_id": lease_id, "start_date": _blazar(start)}
            booked["end_date"] = _blazar(start + timedelta(days=7))
            data["host_allocations"].append({"resource_id": host_id, "reservations": [booked]})
    data["aggregates"] = [{"id": 1, "name": "freepool", "hosts": freepool, "metadata": {}}]
    finished = now - timedelta(seconds=2)
    services = {s: ServiceRead("ok", seconds=1.0) for s in ("ironic", "nova", "neutron", "placement", "blazar")}
    services["keystone"] = ServiceRead("ok", seconds=0.2)
    requests = {"ironic": 3 * math.ceil(size / 1000), "nova": 1 + math.ceil(size / 1000), "neutron": 8}
    requests |= {"placement": 1, "blazar": 4, "keystone": 3}
    listings: dict[str, list[dict[str, Any]] | None] = {**data, "projects": projects, "users": users}
    listings["networks"] = networks
    return Snapshot(nodes.site, finished - timedelta(seconds=11), finished, listings, services, requests, finished)


# -- the store -----------------------------------------------------------------------------------------


def _batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _write(store: Store, model: type[Any], rows: Iterable[dict[str, Any]]) -> int:
    """Bulk insert, one transaction per batch of BATCH rows; returns how many."""
    count = 0
    for batch in _batches(rows):
        with store.engine.begin() as connection:
            connection.execute(insert(model), batch)
        count += len(batch)
    return count


def _sweeps(site: str, now_summary: dict[str, Any], days: int, now: datetime) -> Iterator[dict[str, Any]]:
    """One sweep a minute; the fleet's counts drift around today's (so the plots have a shape), today's last."""
    rng = random.Random(f"sweeps:{site}")
    total = now_summary["total"]
    states: dict[str, int] = now_summary["provision_state"]
    steps = days * 86_400 // SWEEP_SECONDS
    start = now - timedelta(seconds=steps * SWEEP_SECONDS)
    for k in range(1, steps + 1):
        at = start + timedelta(seconds=k * SWEEP_SECONDS)
        if k == steps:
            nodes = now_summary
        else:
            phase = 2 * math.pi * k / (7 * 1440)  # weekly: more in use mid-week
            moved = int(total * (0.06 * math.sin(phase) + 0.01 * math.sin(k / 97)))
            shown = dict(states)
            shown["active"] = max(0, states.get("active", 0) + moved)
            shown["available"] = max(0, states.get("available", 0) - moved)
            nodes = {**now_summary, "provision_state": shown}
        failures = rng.random() < 0.005
        findings = rng.randint(20, 60)
        yield {
            "site": site,
            "started_at": at,
            "finished_at": at + timedelta(seconds=8 + rng.random() * 6),
            "ok": not failures,
            "summary": {
                "site": site,
                "apply": True,
                "findings": findings,
                "outcomes": {"observed": rng.randint(0, 3)} if rng.random() < 0.3 else {},
                "breaker": None,
                "skipped": {},
                "reconciled": 0,
                "verified": {},
                "deferred_by_rate_limit": 0,
                "error": "snapshot incomplete: nova: HTTP 503" if failures else None,
                "nodes": nodes,
            },
        }


def _node_fields(state: str, rng: random.Random, at: datetime, error: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {k: None for k in NODE_FIELDS}
    fields |= {"provision_state": state, "maintenance": False, "power_state": "power on"}
    fields |= {"last_error": rng.choice(ERRORS) if error else None, "updated_at": _iso(at)}
    return fields


@dataclass(frozen=True)
class Troubled:
    """Faults are not uniform: a tenth of the fleet gets 80 % of them, the k-th of those with weight 1/(k + 10)
    (at 10,000 nodes the worst gets about 2 % of the ledger: five rows a day, a node that keeps failing)."""

    nodes: list[int]
    cumulative: list[float]


def _troubled(nodes: Fleet, rng: random.Random) -> Troubled:
    chosen = rng.sample(range(len(nodes.uuids)), max(1, len(nodes.uuids) // 10))
    return Troubled(chosen, list(itertools.accumulate(1 / (k + 10) for k in range(len(chosen)))))


def _node(nodes: Fleet, troubled: Troubled, rng: random.Random) -> int:
    if rng.random() < 0.8:
        return rng.choices(troubled.nodes, cum_weights=troubled.cumulative)[0]
    return rng.randrange(len(nodes.uuids))


def _actions(nodes: Fleet, troubled: Troubled, per_day: int, days: int, now: datetime) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"ledger:{nodes.site}")
    weights = [h[2] for h in LEDGER_HAMMERS]
    outcomes, outcome_weights = [o for o, _ in OUTCOMES], [w for _, w in OUTCOMES]
    total = per_day * days
    start = now - timedelta(days=days)
    for k in range(total):
        planned = start + timedelta(seconds=(k + rng.random()) * days * 86_400 / total)
        hammer, kind, _, found, fixed = rng.choices(LEDGER_HAMMERS, weights)[0]
        outcome = rng.choices(outcomes, outcome_weights)[0]
        i = _node(nodes, troubled, rng)
        applied = outcome not in ("observed", "refused", "escalated")
        before = _node_fields(found, rng, planned, hammer in ("error-resetter", "clean-failed"))
        finished = planned + timedelta(seconds=rng.uniform(0.2, 3)) if applied else None
        after = None
        verified = None
        if outcome in ("fixed", "ineffective") and finished:
            verified = finished + timedelta(seconds=rng.uniform(60, 1800))
            after = _node_fields(fixed if outcome == "fixed" else found, rng, verified, outcome == "ineffective")
        elif applied and finished:
            after = _node_fields(found, rng, finished, outcome == "failed")
        yield {
            "site": nodes.site,
            "hammer": hammer,
            "node_uuid": nodes.uuids[i],
            "node_name": nodes.names[i],
            "trigger": "alertmanager" if rng.random() < 0.1 else "sweep",
            "mode": "observe" if outcome == "observed" else "apply",
            "kind": "escalate" if outcome == "escalated" else kind,
            "params": {"target": "deleted", "state": found} if kind == "undeploy" else {"state": found},
            "outcome": outcome,
            "reason": rng.choice(REFUSALS) if outcome == "refused" else f"would {kind}: {found}",
            "before": before,
            "after": after,
            "error": rng.choice(ERRORS) if outcome == "failed" else None,
            "planned_at": planned,
            "started_at": planned if applied or outcome == "escalated" else None,
            "finished_at": finished or (planned if outcome == "escalated" else None),
            "sweep_id": None,
            "agent": "hammersmith@agent-1",
            "verified_at": verified,
        }


def _findings(nodes: Fleet, troubled: Troubled, days: int, now: datetime) -> Iterator[dict[str, Any]]:
    """Episodes of the last FINDINGS_DAYS (older ones are purged); about 250 a day."""
    rng = random.Random(f"findings:{nodes.site}")
    days = min(days, FINDINGS_DAYS)
    start = now - timedelta(days=days)
    for _ in range(250 * days):
        hammer, _, _, found, _ = rng.choice(LEDGER_HAMMERS)
        i = _node(nodes, troubled, rng)
        seen = start + timedelta(seconds=rng.uniform(0, days * 86_400))
        yield {
            "site": nodes.site,
            "hammer": hammer,
            "node_uuid": nodes.uuids[i],
            "node_name": nodes.names[i],
            "summary": f"node in {found}",
            "detail": f"{hammer}: provision_state {found!r}; {rng.choice(ERRORS)}",
            "seen_at": seen,
            "last_seen_at": min(now, seen + timedelta(minutes=rng.randint(1, 600))),
            "sweep_id": None,
        }


def _incidents(nodes: Fleet, troubled: Troubled, per_day: int, days: int, now: datetime) -> list[dict[str, Any]]:
    """Alertmanager's firings: node alerts mostly, each with the hammer its runbook names."""
    rng = random.Random(f"incidents:{nodes.site}")
    catalogue = runbooks.catalogue()
    alerts = sorted({a for r in catalogue.values() for a in r.alerts})
    hammer_of = {a: next(iter(r.hammers), None) for r in catalogue.values() for a in r.alerts}
    node_alerts = [a for a in alerts if a.startswith(("Ironic", "Neutron", "Blazar"))]
    rows = []
    start = now - timedelta(days=days)
    total = per_day * days
    for k in range(total):
        starts = start + timedelta(seconds=(k + rng.random()) * days * 86_400 / total)
        alert = rng.choice(node_alerts) if rng.random() < 0.8 else rng.choice(alerts)
        i = _node(nodes, troubled, rng) if alert in node_alerts else None
        open_now = starts > now - timedelta(hours=48) and rng.random() < 0.3  # a dozen firing now
        by_hand = not open_now and hammer_of.get(alert) is None and rng.random() < 0.4
        resolved = None if open_now else starts + timedelta(minutes=rng.uniform(2, 240))
        labels = {"alertname": alert, "site": nodes.site, "severity": "warning"}
        if i is not None:
            labels |= {"node": nodes.names[i], "node_uuid": nodes.uuids[i]}
        rows.append(
            {
                "site": nodes.site,
                "alertname": alert,
                "fingerprint": f"{rng.getrandbits(64):016x}",
                "starts_at": starts,
                "status": "firing" if open_now else "resolved",
                "labels": labels,
                "annotations": {"summary": f"{alert} on {labels.get('node', nodes.site)}", "description": "..."},
                "node": nodes.names[i] if i is not None else None,
                "hammer": hammer_of.get(alert),
                "runbook_url": f"/runbooks/{alert}",
                "opened_at": starts + timedelta(seconds=30),
                "resolved_at": resolved,
                "action_id": None,
                "resolved_by": "alice" if by_hand else None,
                "manual_minutes": float(rng.choice((10, 15, 20, 30, 45, 90))) if by_hand else None,
                "note": "restarted the conductor and re-ran the clean" if by_hand else None,
            }
        )
    return rows


def _events(incident_ids: list[int], incidents: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    rng = random.Random("events")
    for incident_id, row in zip(incident_ids, incidents, strict=True):
        at = row["opened_at"]
        yield {"incident_id": incident_id, "at": at, "kind": "received", "detail": "firing: delivered by Alertmanager"}
        for n in range(rng.choice((0, 0, 1, 2, 5, 12))):
            at += timedelta(minutes=5)
            yield {"incident_id": incident_id, "at": at, "kind": "duplicate", "detail": f"re-delivered ({n + 2})"}
        if row["hammer"]:
            yield {"incident_id": incident_id, "at": at, "kind": "action", "detail": f"{row['hammer']}: fixed"}
        else:
            yield {"incident_id": incident_id, "at": at, "kind": "no_action", "detail": "no hammer mapped"}
        if row["resolved_at"]:
            yield {"incident_id": incident_id, "at": row["resolved_at"], "kind": "resolved", "detail": "resolved"}


def _maintenances(nodes: Fleet, days: int, now: datetime) -> Iterator[dict[str, Any]]:
    """About five a day over the period; those of the last days still open, a few planned ahead."""
    rng = random.Random(f"maint:{nodes.site}")
    start = now - timedelta(days=days)
    for _ in range(5 * days + 40):
        begin = start + timedelta(seconds=rng.uniform(0, (days + 14) * 86_400))
        until = begin + timedelta(hours=rng.choice((4, 8, 24, 72, 168)))
        i = rng.randrange(len(nodes.uuids))
        if begin > now:
            state, ended = "waiting", None
        elif until > now:
            state, ended = "in-maintenance", None
        else:
            state, ended = rng.choices(("done", "cancelled"), (9, 1))[0], until
        kind = rng.choices(("maint", "retire", "window", "adopted"), (70, 5, 10, 15))[0]
        yield {
            "site": nodes.site,
            "node_uuid": nodes.uuids[i],
            "node_name": nodes.names[i],
            "kind": kind,
            "state": state,
            "reason": rng.choice(MAINT_REASONS),
            "ticket": f"OPS-{rng.randint(1000, 9999)}",
            "by": rng.choice(("alice", "bob", "hammersmith")),
            "start_at": begin,
            "until": until,
            "lease_id": _uuid(rng),
            "silence_id": _uuid(rng),
            "step": "returned" if ended else "in-maintenance",
            "error": None,
            "created_at": begin - timedelta(hours=1),
            "updated_at": ended or begin,
            "ended_at": ended,
        }


def _results(site: str, days: int, now: datetime) -> Iterator[dict[str, Any]]:
    """Probes every minute and the cheap smoke set hourly, the expensive daily, for RESULTS_DAYS."""
    rng = random.Random(f"results:{site}")
    days = min(days, RESULTS_DAYS)
    start = now - timedelta(days=days)
    for k in range(days * 86_400 // PROBE_SECONDS):
        at = start + timedelta(seconds=k * PROBE_SECONDS)
        outage = k % 20_000 < 30  # a half-hour outage every two weeks or so
        for name in PROBES:
            failed = outage or rng.random() < 0.002
            yield {
                "site": site,
                "source": "probe",
                "name": name,
                "status": "failed" if failed else "passed",
                "started_at": at,
                "seconds": rng.uniform(0.02, 0.4),
                "message": "HTTP 503 from the baremetal endpoint" if failed else None,
                "report": None,
            }
        if k % 60 == 0 or k % 1440 == 0:
            for name in CHEAP_SMOKE if k % 1440 else CHEAP_SMOKE + EXPENSIVE_SMOKE:
                failed = outage or rng.random() < 0.01
                yield {
                    "site": site,
                    "source": "smoke",
                    "name": name,
                    "status": "failed" if failed else "passed",
                    "started_at": at,
                    "seconds": rng.uniform(1, 600) if name in EXPENSIVE_SMOKE else rng.uniform(0.2, 5),
                    "message": "timed out waiting for the lease to start" if failed else None,
                    "report": f"/var/lib/hammersmith/smoke/{site}-{k}.json",
                }


def _posts(site: str, days: int, now: datetime) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"posts:{site}")
    count = max(2, days * 100 // 365)
    for k in range(count):
        created = now - timedelta(days=days) + timedelta(days=days * (k + rng.random()) / count)
        title, impact = rng.choice(STATUS_TITLES)
        ongoing = k == count - 1
        yield {
            "site": site,
            "title": title,
            "body": POST_BODY,
            "impact": impact,
            "state": "ongoing" if ongoing else "resolved",
            "published_by": "alice",
            "created_at": created,
            "updated_at": created,
            "resolved_at": None if ongoing else created + timedelta(hours=rng.uniform(0.5, 12)),
        }


@dataclass
class Built:
    """What the bench needs to know of a store it made (or reused): where, when its data ends, row counts."""

    path: Path
    now: datetime
    counts: dict[str, int]
    seconds: float
    reused: bool


def store_path(cache: Path, sites: list[str], nodes: int, days: int) -> Path:
    return cache / f"dashboard-v{VERSION}-{'+'.join(sites)}-{nodes}n-{days}d.sqlite"


def build(
    cache: Path,
    sites: list[str],
    nodes: int,
    days: int,
    *,
    ledger_per_day: int = 300,
    incidents_per_day: int = 20,
    max_age: timedelta = timedelta(hours=12),
    fresh: bool = False,
) -> Built:
    """The cached store for these parameters, made first when it is missing, stale (its data would end over
    `max_age` ago, so "last 24 h" would be half empty) or `fresh` is asked."""
    path = store_path(cache, sites, nodes, days)
    meta = path.with_suffix(".json")
    if not fresh and path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        now = datetime.fromisoformat(info["now"])
        if info.get("version") == VERSION and datetime.now(UTC) - now < max_age:
            return Built(path, now, info["counts"], info["seconds"], True)
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    stale = [f for f in cache.glob("dashboard-v*") if not f.name.startswith(f"dashboard-v{VERSION}-")]
    for leftover in (path, meta, partial, *cache.glob(partial.name + "-*"), *stale):  # old versions: 650 MB each
        leftover.unlink(missing_ok=True)
    started = time.perf_counter()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    store = open_store(f"sqlite:///{partial}")
    counts: dict[str, int] = {}
    try:
        for site in sites:
            fleet_ = fleet(site, nodes)
            rng = random.Random(f"troubled:{site}")
            troubled = _troubled(fleet_, rng)
            summary = snapshot(fleet_, now).summary()["nodes"]
            for name, model, rows in (
                ("sweeps", Sweep, _sweeps(site, summary, days, now)),
                ("actions", Action, _actions(fleet_, troubled, ledger_per_day, days, now)),
                ("findings", Finding, _findings(fleet_, troubled, days, now)),
                ("maintenances", Maintenance, _maintenances(fleet_, days, now)),
                ("detect_results", DetectResult, _results(site, days, now)),
                ("status_posts", StatusPost, _posts(site, days, now)),
            ):
                counts[name] = counts.get(name, 0) + _write(store, model, rows)
            incidents = _incidents(fleet_, troubled, incidents_per_day, days, now)
            with store.engine.begin() as connection:
                ids = [connection.execute(insert(Incident).values(**row)).inserted_primary_key[0] for row in incidents]
            counts["incidents"] = counts.get("incidents", 0) + len(ids)
            counts["incident_events"] = counts.get("incident_events", 0) + _write(
                store, IncidentEvent, _events(ids, incidents)
            )
    finally:
        store.close()
    seconds = round(time.perf_counter() - started, 1)
    partial.rename(path)
    for suffix in ("-wal", "-shm", ".migrate-lock"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    meta.write_text(json.dumps({"version": VERSION, "now": now.isoformat(), "counts": counts, "seconds": seconds}))
    return Built(path, now, counts, seconds, False)
