"""The remediation ledger against both backends: migration, the action ledger's counts, breaker, locks under races."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect, make_url, text

from hammersmith.store import MIGRATIONS, Store, open_store
from hammersmith.store.models import Base, Snapshot

T0 = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
LEDGER_TABLES = {"findings", "actions", "breakers", "locks", "notifications", "sweeps"}


def _begin(store: Store, *, hammer: str = "error-resetter", node: str = "uuid-1", now: datetime = T0) -> int:
    return store.begin_action(
        site="lab",
        hammer=hammer,
        node_uuid=node,
        node_name=f"name-of-{node}",
        trigger="sweep",
        kind="undeploy",
        params={"target": "deleted"},
        before={"provision_state": "deploy failed"},
        now=now,
    )


def _record(store: Store, *, outcome: str, mode: str = "observe", node: str = "uuid-1", now: datetime = T0) -> int:
    return store.record_action(
        site="lab",
        hammer="error-resetter",
        node_uuid=node,
        node_name=f"name-of-{node}",
        trigger="sweep",
        mode=mode,
        kind="undeploy",
        params={},
        outcome=outcome,
        reason=f"{outcome} for a test",
        now=now,
    )


def _race(stores: list[Store], per_store: int, attempt: Callable[[Store, int], bool]) -> list[bool]:
    """Start every caller at once, spread over separate engines (as separate agents would be)."""
    callers = [(s, i) for s in stores for i in range(per_store)]
    barrier = threading.Barrier(len(callers))

    def run(caller: tuple[Store, int]) -> bool:
        barrier.wait()
        return attempt(*caller)

    with ThreadPoolExecutor(len(callers)) as pool:
        return list(pool.map(run, callers))


def test_0002_applies_on_top_of_0001_and_is_idempotent(store_url: str) -> None:
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True)
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0001"
        conn.execute(
            insert(Snapshot).values(
                site="lab",
                started_at=T0,
                finished_at=T0,
                duration_seconds=1.0,
                complete=True,
                incomplete_services=[],
                requests={},
                counts={},
            )
        )
    engine.dispose()

    open_store(store_url).close()
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            assert LEDGER_TABLES <= set(inspect(conn).get_table_names())
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0008"
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert [row.site for row in store.recent_snapshots()] == ["lab"]
    finally:
        store.close()


def test_begin_finish_round_trip(store: Store) -> None:
    action_id = _begin(store, now=T0.astimezone(CEST))
    (row,) = store.in_flight("lab")
    assert (row.id, row.mode, row.outcome, row.params) == (action_id, "apply", "in_flight", {"target": "deleted"})
    assert row.planned_at == row.started_at == T0 and row.started_at.utcoffset() == timedelta(0)
    assert (row.finished_at, row.after, row.error, row.reason) == (None, None, None, None)
    assert row.before == {"provision_state": "deploy failed"}

    after = {"provision_state": "available", "extra": {"nested": [1, 2]}}
    store.finish_action(action_id, outcome="succeeded", after=after, now=T0 + timedelta(seconds=30))
    assert store.in_flight("lab") == []
    (done,) = store.actions(site="lab")
    assert (done.outcome, done.after, done.finished_at) == ("succeeded", after, T0 + timedelta(seconds=30))
    assert done.to_dict()["finished_at"] == "2026-05-10T12:00:30+00:00"
    assert done.to_dict()["after"] == after and done.to_dict()["sweep_id"] is None

    failed = _begin(store, node="uuid-2")
    store.finish_action(failed, outcome="failed", error="409 Conflict", reason="left in flight")
    (row,) = store.actions(node="uuid-2")
    assert (row.outcome, row.error, row.reason, row.after) == ("failed", "409 Conflict", "left in flight", None)
    with pytest.raises(LookupError):
        store.finish_action(10_000, outcome="failed")


def test_record_action_in_one_go(store: Store) -> None:
    observed = _record(store, outcome="observed")
    escalated = _record(store, outcome="escalated", mode="apply", now=T0 + timedelta(minutes=1))
    rows = {row.id: row for row in store.actions()}
    assert (rows[observed].planned_at, rows[observed].started_at, rows[observed].finished_at) == (T0, None, None)
    when = T0 + timedelta(minutes=1)
    assert (rows[escalated].started_at, rows[escalated].finished_at) == (when, when)
    assert rows[escalated].reason == "escalated for a test"
    assert store.in_flight("lab") == []


def test_attempts_count_applied_outcomes_in_window(store: Store) -> None:
    hour = timedelta(hours=1)
    for outcome, at in [("succeeded", T0), ("failed", T0 + hour), ("reconciled", T0 + 2 * hour)]:
        store.finish_action(_begin(store, now=at), outcome=outcome)
    _begin(store, now=T0 + 3 * hour)  # still in flight: counts, the call may have happened
    _record(store, outcome="observed", now=T0 + 3 * hour)
    _record(store, outcome="refused", mode="apply", now=T0 + 3 * hour)
    _record(store, outcome="escalated", mode="apply", now=T0 + 3 * hour)
    _begin(store, node="uuid-other", now=T0 + 3 * hour)
    _begin(store, hammer="other-hammer", now=T0 + 3 * hour)

    def attempts(since: datetime) -> int:
        return store.attempts(site="lab", hammer="error-resetter", node_uuid="uuid-1", since=since)

    assert attempts(T0) == 4
    assert attempts(T0 + hour) == 3
    assert attempts(T0 + 3 * hour) == 1
    assert attempts(T0 + 4 * hour) == 0
    assert store.attempts(site="elsewhere", hammer="error-resetter", node_uuid="uuid-1", since=T0) == 0


def test_applied_count_per_hammer(store: Store) -> None:
    for hammer in ["error-resetter", "error-resetter", "clean-failed"]:
        _begin(store, hammer=hammer, now=T0 + timedelta(minutes=5))
    _begin(store, now=T0 - timedelta(minutes=5))
    _record(store, outcome="observed", now=T0 + timedelta(minutes=5))
    assert store.applied_count(site="lab", since=T0) == 3
    assert store.applied_count(site="lab", since=T0 - timedelta(hours=1)) == 4
    assert store.applied_count(site="lab", since=T0, hammer="error-resetter") == 2
    assert store.applied_count(site="lab", since=T0, hammer="clean-failed") == 1
    assert store.applied_count(site="lab", since=T0, hammer="nobody") == 0


def test_actions_filters_newest_first(store: Store) -> None:
    first = _begin(store, node="uuid-1", now=T0)
    second = _begin(store, hammer="clean-failed", node="uuid-2", now=T0 + timedelta(minutes=1))
    third = _record(store, outcome="observed", node="uuid-1", now=T0 + timedelta(minutes=2))
    fourth = _record(store, outcome="refused", node="uuid-1", now=T0 + timedelta(minutes=2))

    assert [r.id for r in store.actions()] == [fourth, third, second, first]
    assert [r.id for r in store.actions(limit=2)] == [fourth, third]
    assert [r.id for r in store.actions(hammer="clean-failed")] == [second]
    assert [r.id for r in store.actions(node="uuid-1")] == [fourth, third, first]
    assert [r.id for r in store.actions(node="name-of-uuid-2")] == [second]
    assert [r.id for r in store.actions(since=T0 + timedelta(minutes=1))] == [fourth, third, second]
    assert [r.id for r in store.actions(site="lab", hammer="error-resetter", node="uuid-1", since=T0)] == [
        fourth,
        third,
        first,
    ]
    assert store.actions(site="elsewhere") == []


def test_record_finding(store: Store) -> None:
    finding = store.record_finding(
        site="lab",
        hammer="error-resetter",
        node_uuid="uuid-1",
        node_name=None,
        summary="deploy failed 3 h ago",
        detail="x" * 10_000,
        sweep_id=7,
    )
    with store.engine.connect() as conn:
        row = conn.execute(text("SELECT node_name, detail, sweep_id FROM findings WHERE id = :id"), {"id": finding})
        assert tuple(row.one()) == (None, "x" * 10_000, 7)


def test_breaker_open_is_idempotent_and_reset(store: Store) -> None:
    assert store.breaker("lab") is None
    assert store.reset_breaker("lab", by="alice") is False

    assert store.open_breaker("lab", "too many actions", now=T0) is True
    assert store.open_breaker("lab", "a later reason", now=T0 + timedelta(minutes=1)) is False
    state = store.breaker("lab")
    assert state is not None and state.is_open
    assert (state.reason, state.opened_at, state.reset_at, state.reset_by) == ("too many actions", T0, None, None)
    assert store.breaker("other") is None

    assert store.reset_breaker("lab", by="alice", now=T0 + timedelta(hours=1)) is True
    assert store.reset_breaker("lab", by="bob") is False
    state = store.breaker("lab")
    assert state is not None and not state.is_open
    assert (state.reset_at, state.reset_by) == (T0 + timedelta(hours=1), "alice")

    assert store.open_breaker("lab", "tripped again", now=T0 + timedelta(hours=2)) is True
    state = store.breaker("lab")
    assert state is not None and state.is_open
    assert (state.reason, state.opened_at, state.reset_at, state.reset_by) == (
        "tripped again",
        T0 + timedelta(hours=2),
        None,
        None,
    )


def test_locks(store: Store) -> None:
    def acquire(holder: str, now: datetime, node: str = "uuid-1") -> bool:
        return store.acquire_lock(site="lab", node_uuid=node, holder=holder, ttl_seconds=60, now=now)

    assert acquire("agent-a", T0)
    assert not acquire("agent-b", T0 + timedelta(seconds=30))
    assert acquire("agent-b", T0, node="uuid-2")  # another node
    assert store.acquire_lock(site="other", node_uuid="uuid-1", holder="agent-b", ttl_seconds=60, now=T0)
    assert acquire("agent-a", T0 + timedelta(seconds=50))  # refresh: now held until T0 + 110 s
    assert not acquire("agent-b", T0 + timedelta(seconds=90))
    assert acquire("agent-b", T0 + timedelta(seconds=111))  # expired: taken over
    assert not acquire("agent-a", T0 + timedelta(seconds=120))

    store.release_lock(site="lab", node_uuid="uuid-1", holder="agent-a")  # not the holder: no-op
    assert not acquire("agent-a", T0 + timedelta(seconds=120))
    store.release_lock(site="lab", node_uuid="uuid-1", holder="agent-b")
    assert acquire("agent-a", T0 + timedelta(seconds=120))


def _acquire_for_race(store: Store, index: int, node: str) -> bool:
    holder = f"store-{id(store)}-thread-{index}"
    return store.acquire_lock(site="lab", node_uuid=node, holder=holder, ttl_seconds=60, now=T0 + timedelta(minutes=1))


@pytest.mark.parametrize("held", ["free", "expired"])
def test_lock_race_between_engines_has_one_winner(store_url: str, held: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]
    try:
        for node in ["uuid-1", "uuid-2", "uuid-3"]:
            if held == "expired":
                assert stores[0].acquire_lock(site="lab", node_uuid=node, holder="dead", ttl_seconds=1, now=T0)
            won = _race(stores, 8, partial(_acquire_for_race, node=node))
            assert won.count(True) == 1, won
    finally:
        for s in stores:
            s.close()


def test_mark_notified_once(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]
    try:
        first = stores[0]
        assert not first.already_notified("lab", "breaker:1")
        assert first.mark_notified("lab", "breaker:1", now=T0) is True
        assert first.mark_notified("lab", "breaker:1", now=T0) is False
        assert first.already_notified("lab", "breaker:1")
        assert not first.already_notified("other", "breaker:1")
        assert first.mark_notified("other", "breaker:1") is True

        long_key = "escalate:error-resetter:uuid-1:" + "traceback line\n" * 500
        assert first.mark_notified("lab", long_key) is True
        assert first.already_notified("lab", long_key)
        assert not first.already_notified("lab", long_key + "more")
        assert first.mark_notified("lab", long_key) is False
        assert first.mark_notified("lab", long_key + "more") is True

        sent = _race(stores, 4, lambda s, _i: s.mark_notified("lab", "escalation:uuid-1"))
        assert sent.count(True) == 1, sent
    finally:
        for s in stores:
            s.close()


def test_sweeps(store: Store) -> None:
    assert store.last_sweep("lab") is None

    def sweep(minutes: int, ok: bool, summary: dict[str, Any]) -> int:
        start = T0 + timedelta(minutes=minutes)
        return store.record_sweep(
            site="lab", started_at=start, finished_at=start + timedelta(seconds=5), ok=ok, summary=summary
        )

    good = sweep(0, True, {"findings": 2, "hammers": {"error-resetter": {"observed": 2}}})
    bad = sweep(10, False, {"error": "nova incomplete"})
    last = store.last_sweep("lab")
    assert last is not None
    assert (last.id, last.ok, last.summary) == (
        good,
        True,
        {"findings": 2, "hammers": {"error-resetter": {"observed": 2}}},
    )
    assert last.finished_at == T0 + timedelta(seconds=5)
    any_last = store.last_sweep("lab", ok_only=False)
    assert any_last is not None and (any_last.id, any_last.ok) == (bad, False)
    assert store.last_sweep("other", ok_only=False) is None
