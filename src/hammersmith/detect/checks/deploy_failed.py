"""Nodes whose deploy failed and that nobody reset."""

from collections.abc import Iterator

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, check, finding


@check("deploy-failed")
def deploy_failed(snapshot: Snapshot, policy: Policy) -> Iterator[Finding]:
    """Node in `deploy failed`: unusable until it is torn down again."""
    for node in snapshot.nodes:
        if node["provision_state"] == "deploy failed":
            yield finding(
                "deploy-failed", node, "deploy failed", node.get("last_error") or "", node.get("provision_updated_at")
            )
