"""stuck-transient: nodes held in a transient state long past any real operation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from openstack import exceptions
from openstack.connection import Connection

from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, node_time
from hammersmith.detect.handsoff import TRANSIENT_STATES
from hammersmith.react import safety
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

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        state = node["provision_state"]
        if state not in ABORTABLE:
            return []  # Ironic cannot abort it: the finding and its notification go to a human
        return [Action(self.name, found.node_uuid, found.node_name, "abort", found.summary, {"state": state})]

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        return bool(node["provision_state"] == action.params["state"])

    def execute(self, conn: Connection, action: Action, live: safety.Live, lease: safety.Lease) -> None:
        state = action.params["state"]
        try:
            safety.provision(conn, action.node_uuid, "abort", ABORTABLE[state])
        except exceptions.HttpException as exc:
            if exc.status_code == 406:
                raise RuntimeError(f"this Ironic cannot abort '{state}' (needs API {ABORTABLE[state]})") from exc
            raise
