"""The breaker counts nodes, grace runs on Ironic's clock, and a fleet left alone for an hour stays quiet in the
ledger; notifications come back when a resolved fault does. Against the real Ironic."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from hammersmith.cloud import snapshot as snapshot_mod
from hammersmith.react.sweep import Sweeper
from hammersmith.store.models import Finding
from tests.conftest import Testbed
from tests.react.conftest import break_nodes, only, rebreak


def test_the_breaker_counts_nodes_not_retries(
    bed: Testbed,
    make_sweeper: Callable[..., Sweeper],
    inbox: tuple[str, list[dict]],
) -> None:
    url, messages = inbox
    (chronic,) = break_nodes(bed, "error-teardown")
    sweeper = make_sweeper(
        {"error-resetter": "apply"},
        notify=[url],
        breaker={"max_actions": 2, "max_percent": 100, "window_minutes": 60},
        budget={"attempts": 5, "window_days": 7},
    )
    for _ in range(3):  # three fixes of one chronic node: one node for the breaker
        assert only(sweeper.sweep(apply=True).actions, chronic)["outcome"] == "fixed"
        rebreak(bed, "error-teardown", chronic)
    (other,) = break_nodes(bed, "deploy-failed")
    result = sweeper.sweep(apply=True)
    assert only(result.actions, other)["outcome"] == "fixed" and result.breaker is None  # 2 nodes: within the cap
    assert only(result.actions, chronic)["outcome"] == "fixed"
    (third,) = break_nodes(bed, "deploy-failed")
    tripped = sweeper.sweep(apply=True)
    assert tripped.breaker and only(tripped.actions, third)["outcome"] == "refused"
    assert "3 nodes acted on in 60 min exceed the cap of 2" in tripped.breaker
    assert f"driven by error-resetter on {', '.join(sorted([chronic, other, third]))}" in tripped.breaker
    (opened,) = [m for m in messages if "circuit breaker OPEN" in m["title"]]
    assert chronic in opened["message"] and third in opened["message"] and "error-resetter" in opened["message"]
    assert sweeper.store.reset_breaker("lab", by="test")


#: limits wide enough to fix everything the earlier tests left broken in one sweep
WIDE: dict[str, Any] = {
    "rate": {"per_sweep": 20, "per_hour": 50},
    "breaker": {"max_percent": 100, "max_actions": 100, "window_minutes": 60},
}


class FastClock(datetime):
    """The agent's clock two hours ahead of Ironic's."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + timedelta(hours=2)


def test_grace_runs_on_ironics_clock_not_the_agents(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], monkeypatch: pytest.MonkeyPatch
) -> None:
    (name,) = break_nodes(bed, "deploy-failed")
    monkeypatch.setattr(snapshot_mod, "datetime", FastClock)
    sweeper = make_sweeper({"error-resetter": "apply"}, grace_minutes=10)
    result = sweeper.sweep(apply=True)
    assert result.snapshot is not None and result.snapshot.started_at - result.snapshot.now > timedelta(hours=1)
    action = only(result.actions, name)
    assert action["outcome"] == "refused" and action["reason"].endswith("s ago (grace 10 min)")
    assert bed.node_raw(name)["provision_state"] == "deploy failed"
    alert = sweeper.act_on("error-resetter", name)  # the alert path reads Ironic's clock from its own answer
    assert alert.skipped["alert"].startswith("refused by the safety layer: changed ")


def test_an_hour_of_refusals_is_one_row_per_node_and_reason(bed: Testbed, make_sweeper: Callable[..., Sweeper]) -> None:
    """At a 5 s interval, 10 nodes refused for an hour would be 7,200 rows; the age in the reason is not news."""
    names = break_nodes(bed, "deploy-failed", count=10)
    sweeper = make_sweeper({"error-resetter": "apply"}, grace_minutes=60)
    for _ in range(12):
        result = sweeper.sweep(apply=True)
        assert {only(result.actions, n)["outcome"] for n in names} == {"refused"}
    rows = [r for r in sweeper.store.actions(hammer="error-resetter", limit=1000) if r.node_name in names]
    assert len(rows) == 10  # one per node
    with sweeper.store.session() as session:
        findings = session.scalar(select(func.count()).select_from(Finding).where(Finding.node_name.in_(names)))
    assert findings == 10  # the same finding, seen again, moves its last_seen_at
    fix = make_sweeper({"error-resetter": "apply"}, **WIDE)
    fix.sweep(apply=True)  # no grace: fixed for the next tests


def test_a_fault_that_comes_back_is_notified_again(
    bed: Testbed,
    make_sweeper: Callable[..., Sweeper],
    inbox: tuple[str, list[dict]],
) -> None:
    url, messages = inbox
    (name,) = break_nodes(bed, "error-teardown")
    observer = make_sweeper({"error-resetter": "observe"}, notify=[url])
    fixer = make_sweeper({"error-resetter": "apply"}, **WIDE)

    def told() -> int:
        return sum(f"found: error-resetter on {name}" in m["message"] for m in messages)

    observer.sweep(apply=False)
    observer.sweep(apply=False)
    assert told() == 1  # once while it lasts
    fixed = fixer.sweep(apply=True)
    assert [a["outcome"] for a in fixed.actions if a["node"] == name] == ["fixed"], fixed.summary()
    observer.sweep(apply=False)  # resolved: forgotten
    rebreak(bed, "error-teardown", name)
    observer.sweep(apply=False)
    assert told() == 2  # it came back: news again
    fixer.sweep(apply=True)


def test_a_node_escalated_again_after_a_human_released_it_is_notified_again(
    bed: Testbed,
    make_sweeper: Callable[..., Sweeper],
    inbox: tuple[str, list[dict]],
) -> None:
    url, messages = inbox
    (name,) = break_nodes(bed, "teardown-keeps-failing")
    sweeper = make_sweeper({"error-resetter": "apply"}, notify=[url], **WIDE)

    def gave_up() -> int:
        return sum(f"gave up on {name}" in m["title"] for m in messages)

    assert only(sweeper.sweep(apply=True).actions, name)["outcome"] == "ineffective"
    assert only(sweeper.sweep(apply=True).actions, name)["outcome"] == "escalated"
    sweeper.sweep(apply=True)
    assert gave_up() == 1
    bed.conn.baremetal.unset_node_maintenance(name)  # a human releases it without fixing the cause
    assert only(sweeper.sweep(apply=True).actions, name)["outcome"] == "escalated"
    assert gave_up() == 2
