"""The one safety layer every action passes, whatever triggered it.

Static guards run on the snapshot (hands-off, transient, grace, budget, rate); the breaker
looks at the whole batch; the dynamic guards run right before the API call, on a re-fetched
node under a per-node lock. Anything in doubt is refused: refusing is always safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openstack.connection import Connection
from openstack.exceptions import ConflictException, NotFoundException, raise_from_response

from hammersmith.cloud.snapshot import IRONIC_MICROVERSION
from hammersmith.config import Policy
from hammersmith.detect.checks import node_time
from hammersmith.detect.handsoff import OWN_REASON_PREFIX, TRANSIENT_STATES, hands_off
from hammersmith.react.hammers import Action, Hammer
from hammersmith.store import Store

#: the node `extra` key holding attempt timestamps, so a lost database or another agent can't reset a budget
EXTRA_KEY = "hammersmith_attempts"


class Refused(Exception):
    """The safety layer says no; the message is the reason recorded in the ledger."""


def may_touch(hammer: Hammer, node: dict[str, Any], policy: Policy, now: datetime) -> None:
    """Must-not-touch rules; raise Refused with the reason."""
    reason = hands_off(node, policy)
    if reason:
        raise Refused(reason)
    own = (node.get("maintenance_reason") or "").startswith(OWN_REASON_PREFIX)
    if node.get("maintenance") and (own or not (hammer.fault and node.get("fault") == hammer.fault)):
        raise Refused(f"in maintenance ({node.get('maintenance_reason') or node.get('fault') or 'no reason'})")
    if node["provision_state"] in TRANSIENT_STATES and not hammer.transient_ok:
        raise Refused(f"in transient state '{node['provision_state']}'")
    changed = node_time(node.get("updated_at"))
    if changed and now - changed < timedelta(minutes=policy.grace_minutes):
        raise Refused(f"changed {int((now - changed).total_seconds())} s ago (grace {policy.grace_minutes:g} min)")


def attempts_in_node(node: dict[str, Any], hammer: str, since: datetime) -> int:
    stamps = ((node.get("extra") or {}).get(EXTRA_KEY) or {}).get(hammer) or []
    return sum(1 for s in stamps if (t := node_time(s)) and t >= since)


def attempts(store: Store, site: str, hammer: str, node: dict[str, Any], policy: Policy, now: datetime) -> int:
    """Attempts in the budget window: the larger of the ledger's count and the node's own record."""
    since = now - timedelta(days=policy.budget.window_days)
    return max(
        store.attempts(site=site, hammer=hammer, node_uuid=node["uuid"], since=since),
        attempts_in_node(node, hammer, since),
    )


def record_attempt(conn: Connection, node: dict[str, Any], hammer: str, policy: Policy, now: datetime) -> bool:
    """Append this attempt to the node's own `extra` record (pruned to the budget window).

    Ironic refuses any PATCH while a state transition runs (409); the ledger's record then
    stands alone, and the caller may try again once the action has moved the node on.
    """
    since = now - timedelta(days=policy.budget.window_days)
    record = dict((node.get("extra") or {}).get(EXTRA_KEY) or {})
    kept = [s for s in record.get(hammer, []) if (t := node_time(s)) and t >= since]
    record[hammer] = [*kept, now.isoformat()]
    patch = [{"op": "add", "path": f"/extra/{EXTRA_KEY}", "value": record}]
    try:
        conn.baremetal.patch_node(node["uuid"], patch, retry_on_conflict=False)
    except ConflictException:
        return False
    return True


def last_error(conn: Connection, node: dict[str, Any]) -> str:
    """`last_error`, or the newest error event of the node's history once Ironic's power sync cleared it."""
    if node.get("last_error"):
        return str(node["last_error"])
    response = conn.baremetal.get(f"/nodes/{node['uuid']}/history", microversion=IRONIC_MICROVERSION, raise_exc=False)
    if response.status_code != 200:
        return ""
    errors = [e for e in response.json().get("history", []) if e.get("severity") == "ERROR"]
    return str(errors[-1]["event"]) if errors else ""


def short_error(exc: Exception) -> str:
    """The service's own words, without the SDK's URL preamble."""
    return str(getattr(exc, "details", None) or exc).splitlines()[0][:500]


def live_node(conn: Connection, uuid: str) -> dict[str, Any]:
    """The node as the API shows it now, in the snapshot's shape (same microversion)."""
    response = conn.baremetal.get(f"/nodes/{uuid}", microversion=IRONIC_MICROVERSION, raise_exc=False)
    raise_from_response(response)
    return response.json()


def live_ports(conn: Connection, uuid: str) -> list[dict[str, Any]]:
    response = conn.baremetal.get(
        "/ports/detail", params={"node_uuid": uuid}, microversion=IRONIC_MICROVERSION, raise_exc=False
    )
    raise_from_response(response)
    return response.json()["ports"]


@dataclass(frozen=True)
class BreakerVerdict:
    trip: bool
    reason: str


def breaker_verdict(planned: int, recent: int, fleet: int, policy: Policy) -> BreakerVerdict:
    """Trip when this batch plus what was applied in the window exceeds either cap; no fleet: trip."""
    total = planned + recent
    cap = policy.breaker
    if fleet <= 0:
        return BreakerVerdict(planned > 0, "fleet size unknown")
    percent = 100.0 * total / fleet
    if total > cap.max_actions:
        return BreakerVerdict(True, f"{total} actions in {cap.window_minutes} min exceed the cap of {cap.max_actions}")
    if percent > cap.max_percent:
        return BreakerVerdict(
            True,
            f"{total} actions ({percent:.0f}% of {fleet} nodes) in {cap.window_minutes} min exceed "
            f"{cap.max_percent:g}% of the fleet",
        )
    return BreakerVerdict(False, "")


@contextmanager
def node_lock(store: Store, site: str, node_uuid: str, holder: str, ttl: int) -> Iterator[None]:
    if not store.acquire_lock(site=site, node_uuid=node_uuid, holder=holder, ttl_seconds=ttl):
        raise Refused("locked by another hammer or agent")
    try:
        yield
    finally:
        store.release_lock(site=site, node_uuid=node_uuid, holder=holder)


def recheck(hammer: Hammer, action: Action, conn: Connection, policy: Policy, now: datetime) -> dict[str, Any]:
    """Re-fetch the node and re-check the finding and the rules on live data; return the live node."""
    try:
        node = live_node(conn, action.node_uuid)
    except NotFoundException:
        raise Refused("node no longer exists") from None
    may_touch(hammer, node, policy, now)
    if not hammer.matches(node, live_ports(conn, action.node_uuid), policy, now):
        raise Refused("no longer applies on live data (someone else fixed it or it changed)")
    return node
