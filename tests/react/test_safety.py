"""Pure logic of the safety layer: must-not-touch, grace, budgets on the node, the breaker's arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hammersmith.config import Breaker, Policy
from hammersmith.detect.reservations import Booking, Reservations
from hammersmith.react.hammers import load
from hammersmith.react.safety import EXTRA_KEY, Refused, attempts_in_node, breaker_verdict, may_touch

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def bed_clouds() -> None:
    """These tests need no testbed (overrides the directory's autouse fixture)."""


def node(**fields: Any) -> dict[str, Any]:
    return {
        "uuid": "u1",
        "name": "n1",
        "provision_state": "error",
        "maintenance": False,
        "fault": None,
        "maintenance_reason": None,
        "instance_uuid": None,
        "reservation": None,
        "updated_at": (NOW - timedelta(hours=1)).isoformat(),
        **fields,
    }


def refusal(hammer: str, policy: Policy | None = None, **fields: Any) -> str | None:
    try:
        may_touch(load()[hammer], node(**fields), policy or Policy(), NOW)
    except Refused as exc:
        return str(exc)
    return None


def test_must_not_touch() -> None:
    assert refusal("error-resetter") is None
    assert refusal("error-resetter", instance_uuid="i-1") == "user instance i-1"
    assert refusal("error-resetter", maintenance=True, maintenance_reason="rack move (ann)").startswith(
        "operator maintenance"
    )
    assert refusal("error-resetter", reservation="conductor-1") == "locked by conductor conductor-1"
    assert refusal("error-resetter", provision_state="deploying") == "in transient state 'deploying'"
    assert refusal("stuck-transient", provision_state="wait call-back") is None  # its known error is exactly that


def test_ironic_fault_maintenance_only_for_the_hammer_that_handles_it() -> None:
    error = "Node u1 failed step bios.apply_configuration"
    fault = {
        "maintenance": True,
        "fault": "clean failure",
        "provision_state": "clean failed",
        "maintenance_reason": error,
        "last_error": error,
    }
    assert refusal("clean-failed", **fault) is None
    assert refusal("error-resetter", **fault) is not None
    own = {**fault, "maintenance_reason": "hammersmith: clean-failed gave up after 3 attempts: x"}
    assert refusal("clean-failed", **own) is not None  # after escalation nothing retries it


def test_an_operators_reason_over_ironics_fault_is_the_operators() -> None:
    """Ironic keeps `fault` when an operator writes a reason over it: only Ironic's own words are Ironic's."""
    error = "Node u1 failed step bios.apply_configuration"
    fault = {"maintenance": True, "fault": "clean failure", "provision_state": "clean failed", "last_error": error}
    assert (
        refusal("clean-failed", **fault, maintenance_reason="ann: BIOS battery")
        == "operator maintenance: ann: BIOS battery"
    )
    assert refusal("clean-failed", **fault, maintenance_reason=None) == "operator maintenance (no reason given)"
    # power sync cleared last_error: the node's history still has the failure Ironic wrote as the reason
    cleared = {**fault, "last_error": None, "maintenance_reason": error}
    assert refusal("clean-failed", **cleared).startswith("operator maintenance")
    try:
        may_touch(load()["clean-failed"], node(**cleared), Policy(), NOW, history_error=error)
    except Refused as exc:
        raise AssertionError(f"Ironic's own maintenance refused: {exc}") from None


def test_grace_period() -> None:
    recent = (NOW - timedelta(minutes=3)).isoformat()
    assert refusal("error-resetter", updated_at=recent) == "changed 180 s ago (grace 10 min)"
    assert refusal("error-resetter", Policy(grace_minutes=0), updated_at=recent) is None


def test_grace_uses_the_latest_change_ironic_records() -> None:
    """updated_at alone is not enough: a provision or inspection change inside the grace period counts too."""
    recent = (NOW - timedelta(minutes=2)).isoformat()
    for field in ("provision_updated_at", "inspection_started_at", "inspection_finished_at"):
        assert refusal("error-resetter", **{field: recent}) == "changed 120 s ago (grace 10 min)"


def test_attempts_recorded_on_the_node_count_within_the_window() -> None:
    stamps = [(NOW - timedelta(days=d)).isoformat() for d in (1, 2, 9)]
    n = node(extra={EXTRA_KEY: {"error-resetter": stamps, "clean-failed": [NOW.isoformat()]}})
    assert attempts_in_node(n, "error-resetter", NOW - timedelta(days=7)) == 2
    assert attempts_in_node(node(), "error-resetter", NOW - timedelta(days=7)) == 0


def test_a_malformed_attempt_record_refuses_that_node_only() -> None:
    since = NOW - timedelta(days=7)
    for bad in ("yesterday", ["2026-11-24T12:00:00"], ["not a date"], [42], {"x": 1}):
        record = {EXTRA_KEY: {"error-resetter": bad}} if not isinstance(bad, str) else {EXTRA_KEY: bad}
        with pytest.raises(Refused, match=EXTRA_KEY):
            attempts_in_node(node(extra=record), "error-resetter", since)
    assert attempts_in_node(node(extra={EXTRA_KEY: {"clean-failed": ["x"]}}), "error-resetter", since) == 0


def test_breaker_percent_and_absolute_cap() -> None:
    policy = Policy(breaker=Breaker(max_percent=20, max_actions=10))
    assert not breaker_verdict(5, 0, 30, policy).trip  # 17 %
    assert breaker_verdict(7, 0, 30, policy).trip  # 23 %
    assert breaker_verdict(4, 3, 30, policy).trip  # counts what was applied in the window too
    assert breaker_verdict(11, 0, 1000, policy).trip  # 1.1 % but over the absolute cap
    assert breaker_verdict(1, 0, 0, policy).trip  # no fleet size: fail closed
    assert not breaker_verdict(0, 0, 0, policy).trip


def test_every_hammer_has_a_runbook_and_a_test_under_its_name() -> None:
    from pathlib import Path

    from hammersmith.react import runbooks

    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for name, hammer in load().items():
        assert hammer.runbook.is_file() and runbooks.get(name).body.startswith(f"# {name}\n")
        assert f"def test_{name.replace('-', '_')}" in tests, f"no test named after hammer {name}"
        assert hammer.doc, f"hammer {name} needs a docstring"


def test_a_reserved_node_is_refused_by_the_sweep_and_the_recheck() -> None:
    """may_touch is what both the sweep's plan and the live re-check call: a Blazar lease refuses there."""
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    booked = Reservations({"uuid-n": (Booking("exp-42", "p1", now - timedelta(hours=1), now + timedelta(hours=2)),)})
    with pytest.raises(Refused, match=r"reserved by lease exp-42 \(project p1\) until 2026-11-25 14:00 UTC"):
        may_touch(load()["stale-inspection"], node(uuid="uuid-n"), Policy(), now, reservations=booked)
    may_touch(load()["stale-inspection"], node(uuid="uuid-other"), Policy(grace_minutes=0), now, reservations=booked)
