"""Nodes left in `error` by a failed tear down (Chameleon's ironic-error-resetter target)."""

from collections.abc import Iterator

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, check, finding


@check("error-teardown")
def error_teardown(snapshot: Snapshot, policy: Policy) -> Iterator[Finding]:
    """Node in `error`: Ironic's state after a failed tear down (usually a transient Neutron or BMC failure).

    Matched on the state, not on `last_error`: Ironic's power sync clears `last_error` within a
    minute (when node history is on), so the text Chameleon's resetter matched is often gone.
    """
    for node in snapshot.nodes:
        if node["provision_state"] == "error":
            yield finding(
                "error-teardown",
                node,
                "tear down failed; node stuck in error",
                node.get("last_error") or "(last_error already cleared by Ironic's power sync; see node history)",
                node.get("provision_updated_at"),
            )
