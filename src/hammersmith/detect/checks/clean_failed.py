"""Nodes whose cleaning failed (Ironic also puts them in maintenance, with a `fault`)."""

from collections.abc import Iterator

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, check, finding


@check("clean-failed")
def clean_failed(snapshot: Snapshot, policy: Policy) -> Iterator[Finding]:
    """Node in `clean failed`: out of the pool until an operator or hammer retries cleaning."""
    for node in snapshot.nodes:
        if node["provision_state"] == "clean failed":
            yield finding(
                "clean-failed", node, "cleaning failed", node.get("last_error") or "", node.get("provision_updated_at")
            )
