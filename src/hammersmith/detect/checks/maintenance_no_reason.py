"""Maintenance without a reason: nobody can tell who set it or when it may end."""

from collections.abc import Iterator

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, check, finding


@check("maintenance-no-reason")
def maintenance_no_reason(snapshot: Snapshot, policy: Policy) -> Iterator[Finding]:
    """Node in maintenance with neither a reason nor an Ironic fault."""
    for node in snapshot.nodes:
        if node.get("maintenance") and not node.get("maintenance_reason") and not node.get("fault"):
            yield finding(
                "maintenance-no-reason",
                node,
                "in maintenance with no reason",
                "ask who set it; record a reason or take the node out of maintenance",
            )
