"""stuck-transient: nodes held in a transient state long past any real operation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from openstack import exceptions
from openstack.connection import Connection

from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, node_time
from hammersmith.detect.handsoff import TRANSIENT_STATES
from hammersmith.react.hammers import Action, Hammer, hammer

#: the waiting states Ironic lets an operator abort, with the API microversion that allows it
#: (aborting a deploy in `wait call-back` arrived in 1.110); the other states can only be escalated
ABORTABLE = {
    "wait call-back": "1.110",
    "clean wait": "1.13",
    "inspect wait": "1.41",
    "rescue wait": "1.38",
    "service wait": "1.87",
}


@hammer
class StuckTransient(Hammer):
    """Abort a node stuck in a waiting state longer than `stuck_after_minutes`; report the others."""

    name = "stuck-transient"
    transient_ok = True

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        since = node_time(node.get("provision_updated_at") or node.get("updated_at"))
        if node["provision_state"] not in TRANSIENT_STATES or not since:
            return None
        if now - since <= timedelta(minutes=policy.stuck_after_minutes):
            return None
        return f"stuck in '{node['provision_state']}' for {int((now - since).total_seconds() // 60)} min"

    def plan(self, found: Finding, policy: Policy) -> list[Action]:
        state = found.summary.split("'")[1]
        if state not in ABORTABLE:
            return []  # Ironic cannot abort it: the finding and its notification go to a human
        return [Action(self.name, found.node_uuid, found.node_name, "abort", found.summary, {"state": state})]

    def execute(self, conn: Connection, action: Action) -> None:
        response = conn.baremetal.put(
            f"/nodes/{action.node_uuid}/states/provision",
            json={"target": "abort"},
            microversion=ABORTABLE[action.params["state"]],
            raise_exc=False,
        )
        if response.status_code == 406:
            raise RuntimeError(
                f"this Ironic cannot abort '{action.params['state']}' (needs API {ABORTABLE[action.params['state']]})"
            )
        exceptions.raise_from_response(response)
