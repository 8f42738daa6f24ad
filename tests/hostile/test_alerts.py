"""Hostile alerts against a real `hammersmith run`: values no store can hold are set aside alone, deliveries hit by
a store error are retried until processed or dead-lettered (shown by the real CLI), a client that leaves or
dawdles mid-body costs a debug line or a 408, path-like node labels never reach Ironic, and one request cannot
mint metric series."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from hammersmith.store import open_store
from hammersmith.web import webhook
from tests.conftest import Postgres, Testbed, hammersmith
from tests.hostile.conftest import TOKEN, AgentProcess

T0 = "2026-11-25T12:00:00Z"
STALE = {"site": {"alerts": {"NodeNeverInspected": "stale-inspection"}}, "modes": {"stale-inspection": "observe"}}


def alert(name: str, fingerprint: str, **extra: Any) -> dict[str, Any]:
    """A firing alert as Alertmanager sends it (endsAt is Go's zero time while firing)."""
    return {
        "status": "firing",
        "labels": {"alertname": name, "severity": "warning", **extra.pop("labels", {})},
        "annotations": {"summary": f"{name} fired"},
        "startsAt": T0,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
        **extra,
    }


def body(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "hammersmith",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def post(agent: AgentProcess, content: dict[str, Any] | bytes, timeout: float = 30) -> httpx.Response:
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return httpx.post(f"{agent.url}{webhook.PATH}", content=raw, headers=headers, timeout=timeout)


def cli(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    result = hammersmith("--config", str(agent.config), "incidents", *args, cwd=agent.workdir)
    assert result.returncode == 0, result.stderr
    return result


def incidents(agent: AgentProcess, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The agent's incidents, read by the real CLI, once `count` of them are decided (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = json.loads(cli(agent, "--json").stdout)
        decided = [i for i in listed if any(e["kind"] in ("action", "no_action", "error") for e in i["events"])]
        if len(decided) >= count or time.monotonic() > deadline:
            return listed
        time.sleep(0.3)


def dead(agent: AgentProcess) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(cli(agent, "--dead", "--json").stdout)
    return result


def node_names(testbed: Testbed) -> list[str]:
    """Nodes stale-inspection plans for (available, never inspected, no maintenance, no instance), highest names
    first: other tests of the session inject faults into the lowest and deploy or inspect some."""
    nodes = testbed.conn.baremetal.get("/nodes/detail", microversion="1.78").json()["nodes"]
    idle = [
        n["name"]
        for n in nodes
        if n["provision_state"] == "available"
        and not n["maintenance"]
        and not n["instance_uuid"]
        and not n["inspection_finished_at"]
    ]
    return sorted(idle, reverse=True)


# -- item 4: values no store can hold ------------------------------------------------------------------

HOSTILE = {  # field -> raw JSON text of its value
    "startsAt": '"0001-01-01T00:00:00+01:00"',
    "endsAt": '"9999-12-31T23:59:59-23:59"',
    "labels.severity": '"\\ud800"',
    "annotations.summary": "1e999",
}


def hostile_delivery(prefix: str) -> tuple[bytes, dict[int, str]]:
    """Good and hostile alerts interleaved, as raw JSON (a lone surrogate and 1e999 cannot go through json.dumps);
    every good alert also carries 1e999 in an unknown field. Returns the body and {index: field} of the bad ones."""
    texts, bad = [], {}
    for i, (field, value) in enumerate(HOSTILE.items()):
        good = json.dumps(alert(f"{prefix}Good{i}", f"{prefix}good{i}", extra="@INF@"))
        texts.append(good.replace('"@INF@"', "1e999"))
        hostile = alert(f"{prefix}Bad{i}", f"{prefix}bad{i}")
        top, _, key = field.partition(".")
        if key:
            hostile[top][key] = "@HOSTILE@"
        else:
            hostile[top] = "@HOSTILE@"
        texts.append(json.dumps(hostile).replace('"@HOSTILE@"', value))
        bad[2 * i + 1] = f"alerts.{2 * i + 1}.{field}"
    envelope = json.dumps(body()).replace('"alerts": []', '"alerts": [' + ", ".join(texts) + '], "odd": 1e999')
    return envelope.encode(), bad


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_hostile_values_are_set_aside_and_the_rest_processed(
    agent_process: Callable[..., AgentProcess], request: pytest.FixtureRequest, backend: str
) -> None:
    agent = agent_process(top=store_on(backend, request))
    raw, bad = hostile_delivery("H")
    answer = post(agent, raw)
    assert answer.status_code == 200, answer.text
    assert answer.json()["alerts"] == len(HOSTILE)
    assert {a["alert"]: [e["field"] for e in a["errors"]] for a in answer.json()["set_aside"]} == {
        i: [f] for i, f in bad.items()
    }
    assert post(agent, body(alert("After", "after0001"))).status_code == 200  # the next delivery is not blocked
    listed = incidents(agent, len(HOSTILE) + 1)
    assert sorted(i["alertname"] for i in listed) == ["After"] + [f"HGood{i}" for i in range(len(HOSTILE))]
    (kept,) = dead(agent)
    assert kept["processed_at"] is not None and kept["dead_at"] is None
    assert {a["index"]: a["errors"][0]["field"] for a in kept["set_aside"]} == bad
    assert all(a["alert"].isascii() for a in kept["set_aside"])  # ASCII-escaped JSON text, never the raw value
    assert "\\ud800" in kept["set_aside"][2]["alert"] and "Infinity" in kept["set_aside"][3]["alert"]
    table = cli(agent, "--dead").stdout
    assert "alerts.5.labels.severity" in table and "lone surrogate" in table
    assert "Traceback" not in agent.log() and "Exception in ASGI application" not in agent.log()


# -- item 5: retried until processed, or dead-lettered -------------------------------------------------


def test_a_store_error_after_the_answer_is_retried_until_processed(
    agent_process: Callable[..., AgentProcess], testbed: Testbed
) -> None:
    """Stored and answered, then the store fails: first a RAISE while the test holds a row in `hold`, then an
    exclusive lock held longer than the busy timeout. Released, the delivery is processed without a restart,
    and the incident is decided once (one ledger row)."""
    agent = agent_process(**STALE)
    store = agent.workdir / "hammersmith.sqlite"
    node = node_names(testbed)[0]
    db = sqlite3.connect(store, isolation_level=None, timeout=30)
    db.executescript(
        """CREATE TABLE hold (x INTEGER); INSERT INTO hold VALUES (1);
        CREATE TRIGGER held BEFORE INSERT ON incident_events WHEN NEW.kind = 'action' AND EXISTS (SELECT 1 FROM hold)
        BEGIN SELECT RAISE(ABORT, 'held by the test'); END;"""
    )
    answer = post(agent, body(alert("NodeNeverInspected", "retry00000000001", labels={"node": node})))
    assert answer.status_code == 200
    agent.wait_for("failed (try 1), retrying in 1 s: IntegrityError")
    db.execute("BEGIN EXCLUSIVE")
    db.execute("DELETE FROM hold")
    agent.wait_for("database is locked", timeout=30)
    time.sleep(1)
    held_until = time.monotonic()
    db.execute("COMMIT")
    (incident,) = incidents(agent, 1, timeout=60)
    assert [e["kind"] for e in incident["events"]] == ["received", "action"], incident["events"]
    assert incident["action_id"] is not None and f"ledger #{incident['action_id']}" in incident["events"][1]["detail"]
    processed_after = time.monotonic() - held_until
    ledger = hammersmith("--config", str(agent.config), "ledger", "--json", cwd=agent.workdir)
    rows = [r for r in json.loads(ledger.stdout) if r["trigger"] == "alertmanager" and r["node_name"] == node]
    assert len(rows) == 1, rows  # tried three times or more, acted once
    assert dead(agent) == []
    tries = [line for line in agent.lines if "webhook delivery" in line and "retrying in" in line]
    assert len(tries) >= 2 and processed_after < 20, (tries, processed_after)
    print(f"{len(tries)} failed tries, processed {processed_after:.1f} s after the lock was released")
    db.close()


def store_on(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """`top` config for an agent on SQLite (its default) or on a fresh database of the session's PostgreSQL."""
    if backend == "sqlite":
        return {}
    postgres: Postgres = request.getfixturevalue("postgres")
    return {"store_url": postgres.create_database(f"alerts_{uuid.uuid4().hex[:12]}")}


BROKEN = {
    "sqlite": [
        """CREATE TRIGGER broken BEFORE INSERT ON incident_events WHEN NEW.kind IN ('action', 'no_action')
        BEGIN SELECT RAISE(ABORT, 'the incidents table is broken'); END"""
    ],
    "postgresql": [
        """CREATE FUNCTION broken() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN RAISE EXCEPTION 'the incidents table is broken'; END $$""",
        """CREATE TRIGGER broken BEFORE INSERT ON incident_events FOR EACH ROW
        WHEN (NEW.kind IN ('action', 'no_action')) EXECUTE FUNCTION broken()""",
    ],
}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_delivery_that_keeps_failing_is_dead_lettered_with_its_error(
    agent_process: Callable[..., AgentProcess], testbed: Testbed, request: pytest.FixtureRequest, backend: str
) -> None:
    """A trigger in hammersmith's own store makes every try fail after the hammer acted: three tries (1 s, 2 s
    apart), one action, then the dead-letter list of the real CLI shows the delivery with its error."""
    top = store_on(backend, request)
    agent = agent_process(http={"delivery_attempts": 3}, top=top, **STALE)
    node = node_names(testbed)[1]
    engine = create_engine(top.get("store_url") or f"sqlite:///{agent.workdir / 'hammersmith.sqlite'}")
    with engine.begin() as connection:
        for statement in BROKEN[backend]:
            connection.exec_driver_sql(statement)
    engine.dispose()
    started = time.monotonic()
    failing = post(agent, body(alert("NodeNeverInspected", "dead000000000001", labels={"node": node})))
    assert failing.status_code == 200
    agent.wait_for("dead-lettered after 3 tries", timeout=60)
    took = time.monotonic() - started
    (letter,) = dead(agent)
    assert letter["id"] == failing.json()["delivery"]
    assert letter["attempts"] == 3 and letter["dead_at"] and letter["processed_at"] is None
    assert "the incidents table is broken" in letter["last_error"]
    table = cli(agent, "--dead").stdout
    assert "dead" in table and "the incidents table is broken" in table
    ledger = hammersmith("--config", str(agent.config), "ledger", "--json", cwd=agent.workdir)
    rows = [r for r in json.loads(ledger.stdout) if r["trigger"] == "alertmanager" and r["node_name"] == node]
    assert len(rows) == 1, rows  # three tries, one action
    assert 3 <= took < 30, took  # backoff 1 s then 2 s
    print(f"{backend}: dead-lettered after 3 tries in {took:.1f} s")
    assert post(agent, body(alert("Later", "later00000000001"))).status_code == 200  # not blocked behind it


def test_a_locked_store_at_arrival_is_503_and_the_retry_is_processed(
    agent_process: Callable[..., AgentProcess],
) -> None:
    """Not stored, not accepted: Alertmanager retries a 503, and that retry goes through once the lock is gone."""
    agent = agent_process()
    db = sqlite3.connect(agent.workdir / "hammersmith.sqlite", isolation_level=None, timeout=30)
    db.execute("BEGIN EXCLUSIVE")
    try:
        refused = post(agent, body(alert("Locked", "locked0000000001")))
    finally:
        db.execute("COMMIT")
        db.close()
    assert refused.status_code == 503
    assert post(agent, body(alert("Locked", "locked0000000001"))).status_code == 200
    assert [i["alertname"] for i in incidents(agent, 1)] == ["Locked"]


# -- item 3: clients that leave or dawdle --------------------------------------------------------------


def _partial(agent: AgentProcess, declared: int, sent: bytes) -> socket.socket:
    host, port = agent.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST {webhook.PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def test_a_client_leaving_or_stalling_mid_body_is_no_traceback(agent_process: Callable[..., AgentProcess]) -> None:
    """Leaving mid-body is the client's business (a debug line); stalling is cut at http.body_timeout_seconds,
    by the connection guard or else by the route's 408 (tests/react/test_webhook.py tests that one alone)."""
    agent = agent_process(http={"body_timeout_seconds": 1})
    for _ in range(3):
        _partial(agent, 5000, b'{"version": "4", "alerts": [').close()
    slow = _partial(agent, 5000, b'{"version": "4"')
    started = time.monotonic()
    answer = slow.recv(4096).decode()
    waited = time.monotonic() - started
    slow.close()
    assert answer == "" or answer.startswith("HTTP/1.1 408"), answer
    assert 0.9 < waited < 5, waited
    assert post(agent, body(alert("StillServing", "serving000000001"))).status_code == 200
    assert [i["alertname"] for i in incidents(agent, 1)] == ["StillServing"]
    assert "Traceback" not in agent.log() and "Exception in ASGI application" not in agent.log(), agent.log()


# -- item 7: node labels ----------------------------------------------------------------------------


def test_path_like_node_labels_are_refused_and_never_sent_to_ironic(
    agent_process: Callable[..., AgentProcess], testbed: Testbed
) -> None:
    agent = agent_process(**STALE)
    hostile = ["../v1/ports?x=hostile7", "a/b", "%2e%2e", ".", "..", "node 1", "n\u00e9", "x" * 256]
    alerts = [alert("NodeNeverInspected", f"path{i:012}", labels={"node": n}) for i, n in enumerate(hostile)]
    node = node_names(testbed)[2]
    alerts.append(alert("NodeNeverInspected", "pathgood00000001", labels={"node": node}))
    assert post(agent, body(*alerts)).status_code == 200
    listed = {i["fingerprint"]: i for i in incidents(agent, len(alerts))}
    for i, _ in enumerate(hostile):
        decided = listed[f"path{i:012}"]["events"][-1]
        assert decided["kind"] == "no_action", decided
        assert (
            "neither an Ironic UUID nor a node name" in decided["detail"] and "not sent to Ironic" in decided["detail"]
        )
    assert listed["pathgood00000001"]["events"][-1]["kind"] == "action"  # a real name still goes through
    ironic_log = "".join(p.read_text(errors="replace") for p in testbed.workdir.rglob("ironic*.log"))
    assert f"/v1/nodes/{node}" in ironic_log  # Ironic logs each request's path: the good one is there
    assert "hostile7" not in ironic_log and "%2e%2e" not in ironic_log.lower() and "/v1/nodes/a/b" not in ironic_log


# -- item 6: what one request can cost -------------------------------------------------------------


def test_one_big_delivery_cannot_mint_metric_series(agent_process: Callable[..., AgentProcess]) -> None:
    """A 1 MiB POST of distinct alert names, each for a site of its own, under the default limits: 1000 alerts kept,
    the rest set aside, and /metrics shows at most 200 names plus "other", no unknown site."""
    agent = agent_process()
    many = [alert(f"Name{i:05}", f"many{i:012}", labels={"site": f"site{i}"}) for i in range(3600)]
    raw = json.dumps(body(*many)).encode()
    while len(raw) > 1_048_576:
        del many[-50:]
        raw = json.dumps(body(*many)).encode()
    started = time.monotonic()
    answer = post(agent, raw)
    assert answer.status_code == 200 and answer.json()["alerts"] == 1000, answer.text[:300]
    aside = answer.json()["set_aside"]
    assert answer.json()["set_aside_total"] == len(many) - 1000 > len(aside) == 100  # the answer stays small
    assert "max_alerts_per_delivery" in aside[0]["errors"][0]["problem"]
    deadline = time.monotonic() + 120
    series: list[str] = []
    while time.monotonic() < deadline:
        text = httpx.get(f"{agent.url}/metrics", timeout=10).text
        series = [line for line in text.splitlines() if line.startswith("hammersmith_incidents_open{")]
        if series:
            break
        time.sleep(0.5)
    took = time.monotonic() - started
    assert len(series) == 201, (len(series), series[:5])
    assert all('site="other"' in line for line in series)
    assert any('alertname="other"' in line and line.endswith(" 800.0") for line in series), series
    print(f"{len(many)} alerts in {len(raw)} bytes: 1000 processed and {len(series)} series in {took:.1f} s")


def test_the_sweep_applies_retention_to_deliveries_and_incidents(agent_process: Callable[..., AgentProcess]) -> None:
    """sites.<name>.policy.retention: old processed and dead deliveries and old resolved incidents go at the next
    sweep; an old delivery never processed and an old incident still firing stay."""
    agent = agent_process(site={"sweep_interval_seconds": 5})  # retention's defaults: 30 and 400 days
    store = open_store(f"sqlite:///{agent.workdir / 'hammersmith.sqlite'}")
    try:
        old = datetime.now(UTC) - timedelta(days=401)
        opened = {}
        for fingerprint, status in (("oldresolved00001", "resolved"), ("oldfiring0000001", "firing")):
            opened[status], _ = store.open_incident(
                site="lab",
                alertname="Old",
                fingerprint=fingerprint,
                starts_at=old,
                status=status,
                labels={"alertname": "Old"},
                annotations={},
                node=None,
                hammer=None,
                runbook_url=None,
                detail="long ago",
                now=old,
            )
        done = store.record_delivery({"version": "4", "alerts": []}, now=old)
        store.mark_processed(done, now=old)
        gone = store.record_delivery({"version": "4", "alerts": []}, now=old)
        store.delivery_failed(gone, "boom", dead=True, now=old)
        waiting = store.record_delivery({"version": "4", "alerts": []}, now=old)
        deadline = time.monotonic() + 60
        while store.incident(opened["resolved"]) is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert store.incident(opened["resolved"]) is None, agent.log()[-3000:]
        assert store.incident(opened["firing"]) is not None
        assert waiting in store.unprocessed_deliveries() and store.dead_deliveries() == []
        assert store.delivery(done) is None and store.delivery(waiting) is not None
    finally:
        store.close()
