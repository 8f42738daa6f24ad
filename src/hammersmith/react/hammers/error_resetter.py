"""error-resetter: nodes left in `error` by a failed tear down, or in `deploy failed`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openstack.connection import Connection

from hammersmith.config import Policy
from hammersmith.detect.checks import Finding
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Hammer, hammer


@hammer
class ErrorResetter(Hammer):
    """Undeploy (tear down and clean again) a node in `error` after a failed tear down, or in `deploy failed`."""

    name = "error-resetter"

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        if node["provision_state"] == "error":  # only a failed tear down leads here; last_error may be cleared
            return "tear down failed; node stuck in error"
        if node["provision_state"] == "deploy failed":
            return "deploy failed"
        return None

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        params = {"target": "deleted", "state": node["provision_state"]}
        return [Action(self.name, found.node_uuid, found.node_name, "undeploy", found.summary, params)]

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        return bool(node["provision_state"] == action.params.get("state", node["provision_state"]))

    def execute(self, conn: Connection, action: Action, live: safety.Live, lease: safety.Lease) -> None:
        safety.provision(conn, action.node_uuid, "deleted")
