"""Nodes whose cleaning failed (Ironic also puts them in maintenance, with a `fault`)."""

from hammersmith.detect.checks import failed_state_check

clean_failed = failed_state_check(
    "clean-failed",
    "clean failed",
    "cleaning failed",
    "Node in `clean failed`: out of the pool until an operator or hammer retries cleaning.",
)
