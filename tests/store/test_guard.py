"""The breaker and hourly rate decided atomically with the intent, across engines (agents) on both backends;
retention and notification forgetting."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from hammersmith.config import Policy
from hammersmith.store import Store, open_store
from hammersmith.store.ledger import Denied, Guard

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def cap(nodes: int) -> Guard:
    return Guard(per_hour=100, window_minutes=60, verdict=lambda n: f"{n} nodes exceed {nodes}" if n > nodes else "")


def begin(store: Store, node: str, guard: Guard, hammer: str = "error-resetter") -> int:
    return store.begin_action(
        site="lab",
        hammer=hammer,
        node_uuid=node,
        node_name=node,
        trigger="sweep",
        kind="undeploy",
        params={},
        before=None,
        agent="test",
        guard=guard,
    )


def test_eight_agents_racing_admit_exactly_the_cap(store_url: str) -> None:
    """Read-then-act would let every agent see room for one more; the row lock lets exactly three through."""
    stores = [open_store(store_url) for _ in range(8)]
    barrier = threading.Barrier(8)

    def one(i: int) -> str:
        barrier.wait()
        try:
            begin(stores[i], f"node-{i}", cap(3))
            return "admitted"
        except Denied as exc:
            return "opened" if exc.opened else "refused"

    try:
        with ThreadPoolExecutor(8) as pool:
            verdicts = sorted(pool.map(one, range(8)))
        assert verdicts.count("admitted") == 3
        assert verdicts.count("opened") == 1  # the fourth opens the breaker; the rest find it open
        breaker = stores[0].breaker("lab")
        assert breaker is not None and breaker.is_open and "driven by error-resetter on" in breaker.reason
        assert len(stores[0].in_flight("lab")) == 3
    finally:
        for store in stores:
            store.close()


def test_retries_on_one_node_do_not_use_up_the_breaker(store: Store) -> None:
    for _ in range(5):
        store.finish_action(begin(store, "chronic", cap(2)), outcome="ineffective")
    begin(store, "other", cap(2))  # two nodes: within the cap
    with pytest.raises(Denied, match="3 nodes exceed 2"):
        begin(store, "third", cap(2))


def test_the_hourly_rate_is_decided_with_the_intent(store: Store) -> None:
    guard = Guard(per_hour=2, window_minutes=60, verdict=lambda n: "")
    begin(store, "a", guard)
    begin(store, "b", guard)
    with pytest.raises(Denied, match="rate limit: error-resetter made 2 actions in the last hour"):
        begin(store, "c", guard)
    begin(store, "c", guard, hammer="clean-failed")  # per hammer


def test_retention_keeps_what_is_still_in_use(store: Store) -> None:
    old = T0 - timedelta(days=500)
    store.record_finding(site="lab", hammer="h", node_uuid="n", node_name="n", summary="s", detail="", now=old)
    store.record_action(
        site="lab", hammer="h", node_uuid="n", node_name="n", trigger="sweep", mode="apply", kind="k",
        params={}, outcome="fixed", now=old,
    )  # fmt: skip
    pending = begin(store, "n", cap(10))
    store.finish_action(pending, outcome="succeeded")  # an unverified fix is kept whatever its age
    store.mark_notified("lab", "action:h:n:2025-07-18T12:00:00+00:00", now=old)
    store.mark_notified("lab", "finding:h:n:s", now=old)  # still seen: kept until it is resolved, not by age
    gone = store.purge("lab", findings_before=T0 - timedelta(days=30), actions_before=T0 - timedelta(days=400))
    assert gone == {"findings": 1, "notifications": 1, "actions": 1}
    assert [r.id for r in store.actions(site="lab")] == [pending]
    assert store.notification_keys("lab", "finding:") == ["finding:h:n:s"]


def test_a_fix_in_between_resets_ineffective(store: Store) -> None:
    """Only the latest verified action of a kind decides whether repeating it is pointless."""
    since = T0 - timedelta(days=7)
    store.finish_action(begin(store, "n", cap(10)), outcome="ineffective")
    assert store.ineffective(site="lab", hammer="error-resetter", node_uuid="n", kind="undeploy", since=since)
    store.finish_action(begin(store, "n", cap(10)), outcome="fixed")
    assert not store.ineffective(site="lab", hammer="error-resetter", node_uuid="n", kind="undeploy", since=since)


def test_forgotten_notifications_are_sent_again(store: Store) -> None:
    assert store.mark_notified("lab", "finding:h:n:s")
    assert not store.mark_notified("lab", "finding:h:n:s")
    assert store.notification_keys("lab", "finding:") == ["finding:h:n:s"]
    assert store.forget_notifications("lab", ["finding:h:n:s"]) == 1
    assert store.mark_notified("lab", "finding:h:n:s")


def test_the_ledger_must_outlive_the_budget_window() -> None:
    with pytest.raises(ValueError, match="retention.ledger_days"):
        Policy(retention={"ledger_days": 3}, budget={"attempts": 3, "window_days": 7})
