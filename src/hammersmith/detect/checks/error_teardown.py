"""Nodes left in `error` by a failed tear down (Chameleon's ironic-error-resetter target)."""

from collections.abc import Iterator

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, check, finding


@check("error-teardown")
def error_teardown(snapshot: Snapshot, policy: Policy) -> Iterator[Finding]:
    """Node in `error` after 'Failed to tear down': usually a transient Neutron or BMC failure."""
    for node in snapshot.nodes:
        if node["provision_state"] == "error" and (node.get("last_error") or "").startswith("Failed to tear down"):
            yield finding(
                "error-teardown",
                node,
                "tear down failed; node stuck in error",
                node["last_error"],
                node.get("provision_updated_at"),
            )
