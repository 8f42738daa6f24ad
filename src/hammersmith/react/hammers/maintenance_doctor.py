"""maintenance-doctor: maintenance nobody can account for. Reports; never unsets a human's maintenance."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hammersmith.config import Policy
from hammersmith.detect.checks import node_time
from hammersmith.detect.handsoff import OWN_REASON_PREFIX
from hammersmith.react.hammers import Hammer, hammer


@hammer
class MaintenanceDoctor(Hammer):
    """Report maintenance without a reason, and hammersmith's own maintenance older than its window."""

    name = "maintenance-doctor"

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        if not node.get("maintenance"):
            return None
        reason = node.get("maintenance_reason") or ""
        if not reason and not node.get("fault"):
            return "in maintenance with no reason: ask who set it, record a reason or end it"
        since = node_time(node.get("updated_at"))
        if (
            reason.startswith(OWN_REASON_PREFIX)
            and since
            and now - since > timedelta(hours=policy.maintenance_window_hours)
        ):
            return f"hammersmith's maintenance is older than {policy.maintenance_window_hours:g} h: needs a human"
        return None
