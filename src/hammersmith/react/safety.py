"""The one safety layer every action passes, whatever triggered it.

Static guards run on the snapshot (hands-off, transient, grace, budget, rate); the breaker
looks at the whole batch, and again, atomically, as each intent is written; the dynamic guards
run right before the API call, on a re-fetched node under a per-action lock. Anything in doubt is
refused: refusing is always safe. Acting calls never wait through another party's conductor lock.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from openstack.connection import Connection
from openstack.exceptions import ConflictException, NotFoundException, raise_from_response

from hammersmith.cloud.connection import SiteConnection
from hammersmith.cloud.snapshot import IRONIC_MICROVERSION, fault_text, server_date
from hammersmith.config import Policy
from hammersmith.detect.checks import node_time
from hammersmith.detect.handsoff import OWN_REASON_PREFIX, TRANSIENT_STATES, hands_off, ironic_maintenance
from hammersmith.detect.reservations import NONE, Reservations
from hammersmith.react.hammers import Action, Hammer, Live
from hammersmith.store import Store

#: the node `extra` key holding attempt timestamps, so a lost database or another agent can't reset a budget
EXTRA_KEY = "hammersmith_attempts"
#: node timestamps that say Ironic (or someone through it) changed the node
CHANGE_FIELDS = ("updated_at", "provision_updated_at", "inspection_started_at", "inspection_finished_at", "created_at")


class Refused(Exception):
    """The safety layer says no; the message is the reason recorded in the ledger."""


class Locked(Refused):
    """Ironic answered 409 NodeLocked: another party (a conductor task, an operator) is working on the node."""


def latest_change(node: dict[str, Any]) -> datetime | None:
    stamps = [t for f in CHANGE_FIELDS if (t := node_time(node.get(f)))]
    return max(stamps) if stamps else None


def may_touch(
    hammer: Hammer,
    node: dict[str, Any],
    policy: Policy,
    now: datetime,
    history_error: str | None = None,
    reservations: Reservations = NONE,
) -> None:
    """Must-not-touch rules; raise Refused with the reason. `now` is Ironic's clock, not the agent's."""
    reason = hands_off(node, policy, history_error, reservations, now)
    if reason:
        raise Refused(reason)
    if node.get("maintenance"):
        own = (node.get("maintenance_reason") or "").startswith(OWN_REASON_PREFIX)
        ironic = ironic_maintenance(node, history_error)
        if own or not (ironic and hammer.fault and node.get("fault") == hammer.fault):
            raise Refused(f"in maintenance ({node.get('maintenance_reason') or node.get('fault') or 'no reason'})")
    if node["provision_state"] in TRANSIENT_STATES and not hammer.transient_ok:
        raise Refused(f"in transient state '{node['provision_state']}'")
    changed = latest_change(node)  # `now` from a Date header is whole seconds: it errs towards refusing
    if policy.grace_minutes and changed and now - changed < timedelta(minutes=policy.grace_minutes):
        raise Refused(f"changed {int((now - changed).total_seconds())} s ago (grace {policy.grace_minutes:g} min)")


def attempts_in_node(node: dict[str, Any], hammer: str, since: datetime) -> int:
    """Attempts the node's own record holds in the window; Refused if the record is not ours to read."""
    record = (node.get("extra") or {}).get(EXTRA_KEY) or {}
    stamps = record.get(hammer, []) if isinstance(record, dict) else None
    if not isinstance(stamps, list):
        raise Refused(f"extra.{EXTRA_KEY} is malformed (expected a map of hammer -> timestamps): fix or remove it")
    times = []
    for stamp in stamps:
        try:
            when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise Refused(f"extra.{EXTRA_KEY}.{hammer} holds {str(stamp)[:40]!r}, not a timestamp with a time zone")
        times.append(when)
    return sum(1 for t in times if t >= since)


def attempts(
    store: Store, site: str, hammer: Hammer, key: str, subject: dict[str, Any], policy: Policy, now: datetime
) -> int:
    """Attempts in the budget window: the ledger's count, or for a node the larger of it and the node's own record."""
    since = now - timedelta(days=policy.budget.window_days)
    counted = store.attempts(site=site, hammer=hammer.name, node_uuid=key, since=since)
    if hammer.subject != "node":
        return counted
    return max(counted, attempts_in_node(subject, hammer.name, since))


def record_attempt(conn: Connection, node: dict[str, Any], hammer: str, policy: Policy, now: datetime) -> bool:
    """Append this attempt to the node's own `extra` record (pruned to the budget window).

    Ironic refuses any PATCH while a state transition runs (409); the ledger's record then
    stands alone, and the caller may try again once the action has moved the node on.
    """
    since = now - timedelta(days=policy.budget.window_days)
    record = dict((node.get("extra") or {}).get(EXTRA_KEY) or {})
    kept = [s for s in record.get(hammer, []) if datetime.fromisoformat(s) >= since]
    record[hammer] = [*kept, now.isoformat()]
    try:
        call(conn, "patch", f"/nodes/{node['uuid']}", [{"op": "add", "path": f"/extra/{EXTRA_KEY}", "value": record}])
    except ConflictException:  # "can not be updated while a state transition is in progress" (not a lock: go on)
        return False
    return True


def call(conn: Connection, method: str, path: str, body: Any = None, microversion: str = IRONIC_MICROVERSION) -> Any:
    """One acting call to Ironic, without the SDK's retries on 409/503 (about 15 s through another party's lock).

    409 NodeLocked raises Locked; any other error status raises the SDK's exception for it.
    """
    kwargs: dict[str, Any] = {"microversion": microversion, "raise_exc": False, "retriable_status_codes": []}
    if body is not None:
        kwargs["json"] = body
    response = getattr(conn.baremetal, method)(path, **kwargs)
    if response.status_code == 409 and "locked" in response.text.lower():
        raise Locked(f"locked: {fault_text(response)}")
    raise_from_response(response)
    return response


def provision(conn: Connection, node_uuid: str, target: str, microversion: str = IRONIC_MICROVERSION) -> None:
    call(conn, "put", f"/nodes/{node_uuid}/states/provision", {"target": target}, microversion)


def history_error(conn: Connection, node_uuid: str) -> str:
    """The newest error event in the node's history (Ironic records every failure there)."""
    response = conn.baremetal.get(f"/nodes/{node_uuid}/history", microversion=IRONIC_MICROVERSION, raise_exc=False)
    if response.status_code != 200:
        return ""
    errors = [e for e in response.json().get("history", []) if e.get("severity") == "ERROR"]
    return str(errors[-1]["event"]) if errors else ""


def history_for(conn: Connection, node: dict[str, Any]) -> str | None:
    """What the node's history says for whose maintenance it is, when only history can tell: Ironic's fault with a
    reason but no last_error left (power sync clears it). None (no call) for every other node."""
    needed = node.get("maintenance") and node.get("fault") and node.get("maintenance_reason")
    return history_error(conn, node["uuid"]) if needed and not node.get("last_error") else None


def last_error(conn: Connection, node: dict[str, Any]) -> str:
    """`last_error`, or the newest error event of the node's history once Ironic's power sync cleared it."""
    return str(node["last_error"]) if node.get("last_error") else history_error(conn, node["uuid"])


def short_error(exc: Exception) -> str:
    """The service's own words, without the SDK's URL preamble."""
    return str(getattr(exc, "details", None) or exc).splitlines()[0][:2000]


def live_node(conn: Connection, uuid: str) -> dict[str, Any]:
    """The node as the API shows it now, in the snapshot's shape (same microversion)."""
    return read_node(conn, uuid)[0]


NODE_NAME = re.compile(r"[A-Za-z0-9._~-]{1,255}")  # Ironic's names: RFC 3986 unreserved characters


def node_ref_problem(ref: str) -> str | None:
    """Why `ref` (an alert's node label) is neither an Ironic UUID nor a node name, or None: it goes into a URL path,
    so `../v1/ports`, `a/b` or `%2e%2e` must never reach Ironic."""
    if NODE_NAME.fullmatch(ref) and ref not in (".", ".."):
        return None
    return f"node label {json.dumps(ref[:80])} is neither an Ironic UUID nor a node name ([A-Za-z0-9._~-], not . or ..)"


def read_node(conn: Connection, uuid: str) -> tuple[dict[str, Any], datetime]:
    """`uuid` may be a name; quoted whole into the path (a second line behind node_ref_problem)."""
    path = f"/nodes/{quote(uuid, safe='')}"
    response = conn.baremetal.get(path, microversion=IRONIC_MICROVERSION, raise_exc=False)
    raise_from_response(response)
    return response.json(), server_date(response) or datetime.now(UTC)


def live_ports(conn: Connection, uuid: str) -> list[dict[str, Any]]:
    response = conn.baremetal.get(
        "/ports/detail", params={"node_uuid": uuid}, microversion=IRONIC_MICROVERSION, raise_exc=False
    )
    raise_from_response(response)
    return response.json()["ports"]


def live(conn: Connection, ref: str) -> Live:
    """`ref` is a UUID or a name (an alert's label); the ports are read by the node's UUID."""
    node, now = read_node(conn, ref)
    return Live(node, live_ports(conn, node["uuid"]), now)


@dataclass(frozen=True)
class BreakerVerdict:
    trip: bool
    reason: str


def breaker_verdict(planned: int, recent: int, fleet: int, policy: Policy) -> BreakerVerdict:
    """Trip when the nodes of this batch plus those acted on in the window exceed either cap; no fleet: trip.

    Counts are distinct nodes: retrying one node (or failing to fix it) is the budget's business, not the fleet's.
    """
    total = planned + recent
    cap = policy.breaker
    if fleet <= 0:
        return BreakerVerdict(planned > 0, "fleet size unknown")
    percent = 100.0 * total / fleet
    if total > cap.max_actions:
        return BreakerVerdict(
            True, f"{total} nodes acted on in {cap.window_minutes} min exceed the cap of {cap.max_actions}"
        )
    if percent > cap.max_percent:
        return BreakerVerdict(
            True,
            f"{total} nodes acted on ({percent:.0f}% of {fleet}) in {cap.window_minutes} min exceed "
            f"{cap.max_percent:g}% of the fleet",
        )
    return BreakerVerdict(False, "")


class Lease:
    """A node lock held by one action: its holder is unique to this acquisition, so neither another thread of
    this process nor a twin container with the same host name and PID can share or release it."""

    def __init__(self, store: Store, site: str, node_uuid: str, agent: str, ttl: int) -> None:
        self.store, self.site, self.node_uuid, self.ttl = store, site, node_uuid, ttl
        self.holder = f"{agent}/{uuid.uuid4().hex}"
        self.renewed = time.monotonic()

    def renew(self, force: bool = False) -> None:
        """Extend the lease once a third of it has passed; Refused if it was lost (expired and taken)."""
        if not force and time.monotonic() - self.renewed < self.ttl / 3:
            return
        if not self.store.renew_lock(
            site=self.site, node_uuid=self.node_uuid, holder=self.holder, ttl_seconds=self.ttl
        ):
            raise Refused("node lock lost to another holder")
        self.renewed = time.monotonic()


def agent_gone(agent: str | None) -> bool:
    """True when `agent` ("host:pid", or a lock holder "host:pid/token") names a process on this host that no
    longer runs."""
    host, _, pid = (agent or "").split("/")[0].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def node_lock(store: Store, site: str, node_uuid: str, agent: str, ttl: int) -> Iterator[Lease]:
    """Hold the node for one action. A lock left by a killed agent on this host is taken over at once."""
    lease = Lease(store, site, node_uuid, agent, ttl)
    if not store.acquire_lock(site=site, node_uuid=node_uuid, holder=lease.holder, ttl_seconds=ttl):
        dead = store.lock_holder(site=site, node_uuid=node_uuid)
        if not (
            agent_gone(dead)
            and store.acquire_lock(site=site, node_uuid=node_uuid, holder=lease.holder, ttl_seconds=ttl, take_from=dead)
        ):
            raise Refused("locked by another hammer or agent")
    try:
        yield lease
    finally:
        store.release_lock(site=site, node_uuid=node_uuid, holder=lease.holder)


def recheck(
    hammer: Hammer, action: Action, site: SiteConnection, policy: Policy, reservations: Reservations = NONE
) -> Live:
    """Re-read the subject (a node: with its ports), re-check the rules and the finding on live data, on the
    service's clock (`reservations`: Blazar read again just now)."""
    try:
        now = hammer.read(site, action.node_uuid)
    except NotFoundException:
        raise Refused(f"{hammer.subject} no longer exists") from None
    hammer.guard(now.node, policy, now.now, site.conn, reservations)
    if not hammer.matches_live(now, policy):
        raise Refused("no longer applies on live data (someone else fixed it or it changed)")
    if not hammer.still_planned(action, now.node, now.ports):
        raise Refused("changed since it was checked: what was planned no longer matches the live node")
    return now


def settled(node: dict[str, Any]) -> bool:
    """Ironic is done with the node: no transient state, no conductor holding it (a failed state keeps its target)."""
    return node["provision_state"] not in TRANSIENT_STATES and not node.get("reservation")


def wait_settled(conn: Connection, node_uuid: str, lease: Lease, seconds: float) -> Live | None:
    """Poll (renewing the lease) until the node settles; None if it has not within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        now = live(conn, node_uuid)
        if settled(now.node):
            return now
        if time.monotonic() >= deadline:
            return None
        lease.renew()
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
