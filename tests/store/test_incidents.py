"""Incidents on both backends: the unique (fingerprint, startsAt) decides the one opener under a race,
resolving closes once, deliveries stay unprocessed until marked, timelines read back in order; failed
deliveries are counted then dead-lettered, hostile alerts set aside, and retention keeps what is still live."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from hammersmith import config
from hammersmith.react.incidents import Alert, Envelope, IncidentProcessor, check
from hammersmith.store import Store, open_store
from hammersmith.store.models import Base

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _open(store: Store, fingerprint: str = "abc123", starts_at: datetime = T0, **extra: Any) -> tuple[int, bool]:
    values: dict[str, Any] = {
        "site": "lab",
        "alertname": "IronicNodeError",
        "fingerprint": fingerprint,
        "starts_at": starts_at,
        "status": "firing",
        "labels": {"alertname": "IronicNodeError", "node": "node-1"},
        "annotations": {"summary": "node-1 in error"},
        "node": "node-1",
        "hammer": "error-resetter",
        "runbook_url": "http://agent/runbooks/IronicNodeError",
        "detail": "firing IronicNodeError on node-1",
        **extra,
    }
    return store.open_incident(**values)


def test_0003_creates_the_incident_tables(store: Store) -> None:
    with store.engine.connect() as conn:
        assert {"incidents", "incident_events", "webhook_deliveries"} <= set(inspect(conn).get_table_names())
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0008"
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_open_once_then_duplicate(store: Store) -> None:
    first, opened = _open(store)
    assert opened
    again, opened_again = _open(store, starts_at=T0.astimezone(timezone(timedelta(hours=2))))  # same instant
    assert (again, opened_again) == (first, False)
    other, opened_other = _open(store, starts_at=T0 + timedelta(seconds=1))  # fired again later: new incident
    assert opened_other and other != first
    store.add_incident_event(first, "duplicate", "delivered again")
    row = store.incident(first)
    assert row is not None
    assert [e.kind for e in row.events] == ["received", "duplicate"]
    assert row.starts_at == T0 and row.status == "firing" and row.labels["node"] == "node-1"
    with pytest.raises(ValueError, match="unknown incident event kind"):
        store.add_incident_event(first, "bogus", "")


def test_open_race_between_engines_has_one_opener(store_url: str) -> None:
    """8 callers on 2 engines (as HA Alertmanager peers hitting two agents would be): one opener per alert."""
    stores = [open_store(store_url), open_store(store_url)]
    try:
        for fingerprint in ("f1", "f2", "f3"):
            callers = [s for s in stores for _ in range(4)]
            barrier = threading.Barrier(len(callers))

            def attempt(s: Store, fp: str = fingerprint, gate: threading.Barrier = barrier) -> tuple[int, bool]:
                gate.wait()
                return _open(s, fingerprint=fp)

            with ThreadPoolExecutor(len(callers)) as pool:
                results = list(pool.map(attempt, callers))
            assert [opened for _, opened in results].count(True) == 1, results
            assert len({incident for incident, _ in results}) == 1
            row = stores[0].incident(results[0][0])
            assert row is not None and [e.kind for e in row.events] == ["received"]
    finally:
        for s in stores:
            s.close()


def test_resolve_closes_once(store: Store) -> None:
    incident, _ = _open(store)
    barrier = threading.Barrier(4)

    def resolve(_: int) -> bool:
        barrier.wait()
        return store.resolve_incident(incident, "resolved at x", now=T0 + timedelta(minutes=5))

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(resolve, range(4))).count(True) == 1
    row = store.incident(incident)
    assert row is not None and row.status == "resolved" and row.resolved_at == T0 + timedelta(minutes=5)
    assert [e.kind for e in row.events] == ["received", "resolved"]
    assert store.incidents(open_only=True) == []
    assert [r.id for r in store.incidents(site="lab")] == [incident]
    assert store.incidents(site="other") == []


def test_open_counts_and_action_link(store: Store) -> None:
    a, _ = _open(store, fingerprint="a")
    _open(store, fingerprint="b", alertname="OpenStackServiceDown", site="east")
    _open(store, fingerprint="c")
    store.set_incident_action(a, 42)
    assert store.incident(a).action_id == 42  # type: ignore[union-attr]
    assert store.open_incident_counts() == {("lab", "IronicNodeError"): 2, ("east", "OpenStackServiceDown"): 1}
    assert store.incident(10_000) is None


def test_deliveries_stay_unprocessed_until_marked(store: Store) -> None:
    body = {"version": "4", "alerts": [{"labels": {"alertname": "X", "note": "ünïcode"}}]}
    first = store.record_delivery(body)
    second = store.record_delivery({"version": "4", "alerts": []})
    assert store.unprocessed_deliveries() == [first, second]
    assert store.delivery(first) == body
    store.mark_processed(first)
    assert store.unprocessed_deliveries() == [second]
    assert store.delivery(99_999) is None


def test_hostile_labels_are_stored_on_both_backends(store_url: str, tmp_path: Path) -> None:
    """Labels are anyone's text: over-long and NUL-carrying ones still make an incident (PostgreSQL refuses both)."""
    path = tmp_path / "hammersmith.yaml"
    raw = {"state_dir": str(tmp_path), "store_url": store_url, "sites": {"lab": {"cloud": "nowhere"}}}
    path.write_text(yaml.safe_dump(raw))
    store = open_store(store_url)
    try:
        processor = IncidentProcessor(config.load(path), "lab", store)
        labels = {"alertname": "A\x00" * 300, "site": "s" * 100, "node": "n\x00" * 200, "x": "\x00"}
        alert = Alert.model_validate(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"runbook_url": "http://x/\x00"},
                "startsAt": T0.isoformat(),
                "fingerprint": "0123456789abcdef",
            }
        )
        outcome = processor.handle(alert)
        assert outcome["event"] == "no_action" and "not served by this agent" in outcome["detail"]
        row = store.incident(outcome["incident"])
        assert row is not None and row.alertname == "A" * 255 and row.site == "s" * 64 and row.node == "n" * 200
        assert row.labels == labels  # the JSON keeps them as sent
    finally:
        store.close()


def test_failed_deliveries_are_counted_then_dead_lettered(store: Store) -> None:
    aside = [{"index": 1, "errors": [{"field": "alerts.1.startsAt", "problem": "bad"}], "alert": '{"x": Infinity}'}]
    clean = store.record_delivery({"version": "4", "alerts": []})
    failing = store.record_delivery({"version": "4", "alerts": []}, set_aside=aside)
    store.delivery_failed(failing, "OperationalError: database is locked", dead=False)
    assert store.delivery_attempts(failing) == 1 and store.unprocessed_deliveries() == [clean, failing]
    store.delivery_failed(failing, "IntegrityError: boom", dead=True)
    assert store.unprocessed_deliveries() == [clean]
    (dead,) = store.dead_deliveries()
    assert (dead.id, dead.attempts, dead.last_error, dead.set_aside) == (failing, 2, "IntegrityError: boom", aside)
    assert dead.dead_at is not None and dead.to_dict()["dead_at"] == dead.dead_at.isoformat()
    store.mark_processed(clean)
    assert [d.id for d in store.dead_deliveries()] == [failing]


def test_retention_keeps_firing_incidents_and_unprocessed_deliveries(store: Store) -> None:
    old, later = T0 - timedelta(days=500), T0 + timedelta(days=1)
    resolved, _ = _open(store, "resolved01", now=old)
    store.resolve_incident(resolved, "resolved", now=old)
    firing, _ = _open(store, "firing0001", now=old)
    recent, _ = _open(store, "recent0001", now=old)
    store.resolve_incident(recent, "resolved", now=T0)
    processed = store.record_delivery({"version": "4", "alerts": []}, now=old)
    store.mark_processed(processed, now=old)
    dead = store.record_delivery({"version": "4", "alerts": []}, now=old)
    store.delivery_failed(dead, "boom", dead=True, now=old)
    waiting = store.record_delivery({"version": "4", "alerts": []}, now=old)
    gone = store.purge_incidents("lab", deliveries_before=T0, incidents_before=T0 - timedelta(days=100))
    assert gone == {"deliveries": 2, "incidents": 1, "incident_events": 2}
    assert sorted(r.id for r in store.incidents()) == sorted([firing, recent])
    assert store.unprocessed_deliveries() == [waiting] and store.dead_deliveries() == []
    assert store.purge_incidents("other", deliveries_before=later, incidents_before=later)["incidents"] == 0


HOSTILE = [
    ("startsAt", '"0001-01-01T00:00:00+01:00"'),
    ("startsAt", '"9999-12-31T23:59:59-23:59"'),
    ("endsAt", '"9999-12-31T23:59:59-23:59"'),
    ("labels.severity", '"\\ud800"'),
    ("labels.severity", "1e999"),
    ("annotations.summary", '"x\\udfff"'),
]


def test_hostile_alerts_are_set_aside_and_the_rest_processed_on_both_backends(store_url: str, tmp_path: Path) -> None:
    """Each hostile alert is set aside with its field; its neighbours become incidents; the stored body is the
    sanitized one (an unknown field holding 1e999 is dropped), readable back on either backend."""
    path = tmp_path / "hammersmith.yaml"
    path.write_text(
        yaml.safe_dump({"state_dir": str(tmp_path), "store_url": store_url, "sites": {"lab": {"cloud": "x"}}})
    )
    good = (
        '{"status": "firing", "labels": {"alertname": "Good%d", "severity": "warning", "nul": "a\\u0000b"},'
        ' "annotations": {"summary": "s"}, "startsAt": "2026-11-25T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",'
        ' "fingerprint": "good%04d", "extra": 1e999}'
    )
    alerts = []
    for i, (field, value) in enumerate(HOSTILE):
        bad = json.loads(good % (100 + i, 100 + i))
        text_ = json.dumps(bad).replace("Infinity", "1e999")
        top, _, key = field.partition(".")
        if key:
            text_ = text_.replace(f'"{key}": "{bad[top][key]}"', f'"{key}": {value}')
        else:
            text_ = text_.replace(f'"{top}": "{bad[top]}"', f'"{top}": {value}')
        alerts += [good % (i, i), text_]
    raw = '{"version": "4", "groupKey": "g", "status": "firing", "receiver": "r", "odd": 1e999, "alerts": [%s]}'
    envelope = Envelope.model_validate(json.loads(raw % ", ".join(alerts)))
    checked = check(envelope, limit=1000)
    assert checked.accepted == len(HOSTILE)
    assert [(a["index"], [e["field"] for e in a["errors"]]) for a in checked.set_aside] == [
        (2 * i + 1, [f"alerts.{2 * i + 1}.{field}"]) for i, (field, _) in enumerate(HOSTILE)
    ]
    assert all(a["alert"].isascii() for a in checked.set_aside)
    store = open_store(store_url)
    try:
        delivery = store.record_delivery(checked.body, set_aside=checked.set_aside)
        assert "odd" not in store.delivery(delivery) and "Infinity" not in json.dumps(store.delivery(delivery))
        IncidentProcessor(config.load(path), "lab", store).process_delivery(delivery)
        rows = store.incidents()
        assert sorted(r.alertname for r in rows) == sorted(f"Good{i}" for i in range(len(HOSTILE)))
        assert {r.labels["nul"] for r in rows} == {"a\x00b"}  # JSON keeps NUL escaped, on PostgreSQL too
        (kept,) = store.dead_deliveries()
        assert kept.processed_at is not None and kept.set_aside == checked.set_aside
        assert "\\ud800" in kept.set_aside[3]["alert"] and "Infinity" in kept.set_aside[4]["alert"]
    finally:
        store.close()
