"""Who else is working on a node: the must-not-touch rules, shared by reports and the safety layer.

A human's change always wins: an operator's maintenance, a user's instance, a node mid-operation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hammersmith.config import Policy
from hammersmith.detect.reservations import NONE, Reservations

#: provision states in which Ironic itself is working on the node
TRANSIENT_STATES = frozenset(
    {
        "deploying",
        "wait call-back",
        "deleting",
        "cleaning",
        "clean wait",
        "verifying",
        "inspecting",
        "inspect wait",
        "rescuing",
        "rescue wait",
        "unrescuing",
        "adopting",
        "servicing",
        "service wait",
        "rebuilding",
        "unprovisioning",
    }
)
#: prefix of every maintenance reason hammersmith itself writes
OWN_REASON_PREFIX = "hammersmith"


def ironic_maintenance(node: dict[str, Any], history_error: str | None = None) -> bool:
    """Maintenance Ironic set itself after a failure: a `fault`, and the reason it wrote, which is the failure's
    `last_error` (or, once power sync has cleared that, the newest error in the node's history).

    Ironic keeps `fault` when an operator writes their own reason over it, so `fault` alone is not enough:
    any other reason (or none) is a human's.
    """
    reason = node.get("maintenance_reason") or ""
    if not node.get("maintenance") or not node.get("fault") or not reason:
        return False
    return reason in {node.get("last_error"), history_error} - {None, ""}


def operator_maintenance(node: dict[str, Any], history_error: str | None = None) -> bool:
    """Maintenance a human set: not Ironic's own, not ours."""
    if not node.get("maintenance") or ironic_maintenance(node, history_error):
        return False
    return not (node.get("maintenance_reason") or "").startswith(OWN_REASON_PREFIX)


def hands_off(
    node: dict[str, Any],
    policy: Policy,
    history_error: str | None = None,
    reservations: Reservations = NONE,
    now: datetime | None = None,
) -> str | None:
    """Why nothing may act on this node, or None (`now`: when to judge its Blazar leases, Ironic's clock)."""
    if node["uuid"] in policy.exempt_nodes or node.get("name") in policy.exempt_nodes:
        return "exempt by site policy"
    if node.get("resource_class") in policy.exempt_resource_classes:
        return f"resource class {node['resource_class']} exempt by site policy"
    if operator_maintenance(node, history_error):
        reason = node.get("maintenance_reason")
        return f"operator maintenance: {reason}" if reason else "operator maintenance (no reason given)"
    if node.get("instance_uuid"):
        return f"user instance {node['instance_uuid']}"
    if node.get("allocation_uuid"):
        return f"allocation {node['allocation_uuid']}"
    if node.get("reservation"):
        return f"locked by conductor {node['reservation']}"
    if now is not None:
        return reservations.hold(node, now, policy.lease_buffer_minutes)
    return None
