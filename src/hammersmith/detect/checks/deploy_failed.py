"""Nodes whose deploy failed and that nobody reset."""

from hammersmith.detect.checks import failed_state_check

deploy_failed = failed_state_check(
    "deploy-failed",
    "deploy failed",
    "deploy failed",
    "Node in `deploy failed`: unusable until it is torn down again.",
)
