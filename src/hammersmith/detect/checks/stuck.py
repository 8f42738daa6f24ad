"""Nodes held in a transient state far longer than any operation takes."""

from collections.abc import Iterator
from datetime import timedelta

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, check, finding, node_time
from hammersmith.detect.handsoff import TRANSIENT_STATES


@check("stuck")
def stuck(snapshot: Snapshot, policy: Policy) -> Iterator[Finding]:
    """Node in a transient state (deploying, wait call-back, cleaning...) longer than `stuck_after_minutes`."""
    limit = timedelta(minutes=policy.stuck_after_minutes)
    for node in snapshot.nodes:
        since = node_time(node.get("provision_updated_at") or node.get("updated_at"))
        if node["provision_state"] in TRANSIENT_STATES and since and snapshot.now - since > limit:
            minutes = int((snapshot.now - since).total_seconds() // 60)
            yield finding(
                "stuck",
                node,
                f"stuck in '{node['provision_state']}' for {minutes} min",
                f"target {node.get('target_provision_state')}; limit {policy.stuck_after_minutes} min",
                node.get("provision_updated_at"),
            )
