"""The Alertmanager webhook against a real Ironic: auth, limits, schema, incidents, and the hammer it triggers
through the sweep's own safety layer and ledger (trigger "alertmanager"), exactly once per alert."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hammersmith import config
from hammersmith.config import Http, Settings
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.react.incidents import Alert, Envelope, IncidentProcessor, IncidentWorker
from hammersmith.store import Store, open_store
from hammersmith.testbed import lifecycle
from hammersmith.testbed.ironic import Ironic
from hammersmith.web import webhook
from hammersmith.web.app import Server, create_app
from tests.conftest import Testbed, hammersmith
from tests.react.conftest import break_nodes, wait_states, write_config

TOKEN = "test-webhook-token-0123456789"
LIMIT = 8192
PUBLIC = "http://agent.example:9184"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@dataclass
class Agent:
    client: TestClient
    store: Store
    worker: IncidentWorker
    settings: Settings

    def post(self, body: Any, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if isinstance(body, bytes):
            return self.client.post(webhook.PATH, content=body, headers=headers, **kwargs)
        return self.client.post(webhook.PATH, json=body, headers=headers, **kwargs)

    def processed(self) -> None:
        self.worker.queue.join()


def agent_config(directory: Path) -> Path:
    path = write_config(directory, {"error-resetter": "apply"})
    raw = yaml.safe_load(path.read_text())
    raw["http"].update(webhook_token=TOKEN, max_body_bytes=LIMIT, public_url=PUBLIC)
    raw["sites"]["lab"]["alerts"] = {"IronicNodeError": "error-resetter", "IronicNodeDeployFailed": "error-resetter"}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    """The agent's app in-process: store, incident worker, webhook route (what `hammersmith run` serves)."""
    settings_ = config.load(agent_config(tmp_path))
    store = open_store(settings_.effective_store_url, settings_.state_dir)
    worker = IncidentWorker(IncidentProcessor(settings_, "lab", store)).start()
    try:
        with TestClient(create_app(Exporter(Telemetry(["lab"])), settings=settings_, worker=worker)) as client:
            yield Agent(client, store, worker, settings_)
    finally:
        worker.stop()
        store.close()


def alert(name: str, node: str | None = None, status: str = "firing", fingerprint: str = "", **extra: Any) -> dict:
    labels = {"alertname": name, "severity": "critical", "site": "lab", **({"node": node} if node else {})}
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{name} on {node}"},
        "startsAt": T0.isoformat(),
        "endsAt": (T0 + timedelta(minutes=5)).isoformat() if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint or f"{abs(hash((name, node))):016x}"[:16],
        **extra,
    }


def payload(*alerts: dict, status: str = "firing") -> dict:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="x"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "hammersmith",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def ledger(store: Store, node: str) -> list[Any]:
    return [r for r in store.actions(site="lab", node=node) if r.trigger == "alertmanager"]


def only_incident(store: Store, name: str) -> Any:
    rows = [r for r in store.incidents() if r.alertname == name]
    assert len(rows) == 1, rows
    return rows[0]


def fault_nodes(bed: Testbed, last_fault: str) -> list[str]:
    faults = Ironic(lifecycle.testbed_dir(bed.workdir)).load_state().faults  # type: ignore[union-attr]
    return sorted(n for n, steps in faults.items() if steps[-1] == last_fault)


# -- refused before anything is stored -----------------------------------------------------------


def test_missing_wrong_or_unset_token_is_401_without_detail(agent: Agent) -> None:
    body = payload(alert("IronicNodeError", "node-001"))
    for token in (None, "wrong-token-0123456789", TOKEN[:-1], TOKEN + "x"):
        answer = agent.post(body, token=token)
        assert (answer.status_code, answer.content) == (401, b""), token
    basic = agent.client.post(webhook.PATH, json=body, headers={"Authorization": f"Basic {TOKEN}"})
    assert (basic.status_code, basic.content) == (401, b"")
    unset = FastAPI()
    unset.include_router(webhook.router(Http(), agent.store, agent.worker.submit))
    with TestClient(unset) as client:
        answer = client.post(webhook.PATH, json=body, headers={"Authorization": "Bearer "})
        assert (answer.status_code, answer.content) == (401, b"")
    assert agent.store.unprocessed_deliveries() == [] and agent.store.incidents() == []


def test_oversized_body_is_413_by_length_and_while_streaming(agent: Agent) -> None:
    big = json.dumps(payload(*(alert("X", f"node-{i:03}") for i in range(60)))).encode()
    assert len(big) > LIMIT
    answer = agent.post(big)
    assert answer.status_code == 413 and str(LIMIT) in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    streamed = agent.client.post(webhook.PATH, content=chunks(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert streamed.status_code == 413
    assert agent.store.unprocessed_deliveries() == [] and agent.store.incidents() == []


def test_malformed_json_and_envelope_errors_are_422_naming_the_field(agent: Agent) -> None:
    broken = agent.post(b'{"version": "4", "alerts": [')
    assert broken.status_code == 422 and broken.json()["detail"].startswith("malformed JSON")
    assert agent.post(b'{"version": NaN}').status_code == 422
    assert agent.post(b"\xff\xfe\xfa").status_code == 422
    assert agent.post(b"[" * 8000).status_code == 422  # nested deeper than the parser recurses

    def fields(body: Any) -> set[str]:
        answer = agent.post(body)
        assert answer.status_code == 422, answer.text
        return {e["field"] for e in answer.json()["errors"]}

    assert fields({**payload(), "version": "3"}) == {"version"}
    infinite = json.dumps({**payload(), "truncatedAlerts": "X"}).replace('"X"', "1e999").encode()  # inf in Python
    assert fields(infinite) == {"truncatedAlerts"}
    assert fields(
        json.dumps(payload(), ensure_ascii=False)
        .replace('"groupLabels": {}', '"groupLabels": {"x": "\\ud800"}')
        .encode()
    ) == {"groupLabels.x"}
    assert fields({**payload(), "alerts": {"0": {}}}) == {"alerts"}
    assert fields([1, 2]) == {"(body)"}
    assert agent.store.unprocessed_deliveries() == [] and agent.store.incidents() == []


def test_a_bad_alert_is_set_aside_and_its_neighbours_processed(agent: Agent) -> None:
    """200 listing each alert the schema refused with its fields; the rest become incidents."""
    no_start = alert("IronicNodeError", "node-001")
    del no_start["startsAt"]
    bad = [
        (no_start, {"startsAt"}),
        (alert("IronicNodeError", labels={"node": "node-1"}), {"labels"}),
        (alert("X", startsAt="yesterday"), {"startsAt"}),
        (alert("X", startsAt="2026-11-25T12:00:00"), {"startsAt"}),  # no time zone
        (alert("X", status="pending"), {"status"}),
        (alert("X", startsAt="0001-01-01T00:00:00+01:00"), {"startsAt"}),  # out of range once in UTC
        (alert("X", endsAt="9999-12-31T23:59:59-23:59"), {"endsAt"}),
        (7, {""}),
    ]
    good = [alert(f"Fine{i}", fingerprint=f"fine{i:012}") for i in range(len(bad))]
    body = payload(*(a for pair in zip(good, (b for b, _ in bad), strict=True) for a in pair))
    answer = agent.post(body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["alerts"] == len(good)
    listed = {a["alert"]: {e["field"] for e in a["errors"]} for a in answer.json()["set_aside"]}
    assert listed == {
        2 * i + 1: {f"alerts.{2 * i + 1}" + (f".{f}" if f else "") for f in want} for i, (_, want) in enumerate(bad)
    }
    agent.processed()
    assert sorted(r.alertname for r in agent.store.incidents()) == sorted(a["labels"]["alertname"] for a in good)
    (kept,) = agent.store.dead_deliveries()
    assert [a["index"] for a in kept.set_aside] == sorted(listed) and kept.processed_at is not None
    assert agent.store.delivery(kept.id) == payload(*(Alert.model_validate(a).model_dump(mode="json") for a in good))


def test_a_body_slower_than_the_body_timeout_is_408(agent: Agent) -> None:
    """The route's own bound, a second line behind the connection guard (web/limits.py): under plain uvicorn,
    a client that sends half a body and stalls gets 408 after http.body_timeout_seconds, not a held handler."""
    app = FastAPI()
    http = Http(webhook_token=TOKEN, body_timeout_seconds=1)
    app.include_router(webhook.router(http, agent.store, agent.worker.submit))
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        with socket.create_connection(sock.getsockname()[:2], timeout=10) as client:
            head = f"POST {webhook.PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            head += "Content-Length: 500\r\n\r\n"
            client.sendall(head.encode() + b'{"version": "4"')
            started = time.monotonic()
            answer = client.recv(4096).decode()
            waited = time.monotonic() - started
        assert answer.startswith("HTTP/1.1 408") and "http.body_timeout_seconds" in answer, answer
        assert 0.9 < waited < 5, waited
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert agent.store.unprocessed_deliveries() == []


# -- incidents ------------------------------------------------------------------------------------


def test_unknown_or_unmapped_alerts_are_stored_without_action(agent: Agent) -> None:
    answer = agent.post(
        payload(
            alert("SomethingNobodyKnows", "node-001"),
            alert("IronicNodeError", fingerprint="nonode0000000001"),  # mapped, but no node label
            alert("OpenStackServiceDown", annotations={"runbook_url": "https://wiki/r/OpenStackServiceDown"}),
        )
    )
    assert answer.status_code == 200 and answer.json()["alerts"] == 3
    agent.processed()
    unknown = only_incident(agent.store, "SomethingNobodyKnows")
    assert unknown.hammer is None and unknown.status == "firing" and unknown.node == "node-001"
    assert unknown.runbook_url == f"{PUBLIC}/runbooks/SomethingNobodyKnows"
    assert [e.kind for e in unknown.events] == ["received", "no_action"]
    assert "no hammer mapped" in unknown.events[1].detail
    no_node = only_incident(agent.store, "IronicNodeError")
    assert no_node.hammer == "error-resetter" and [e.kind for e in no_node.events] == ["received", "no_action"]
    assert "no node label" in no_node.events[1].detail
    assert only_incident(agent.store, "OpenStackServiceDown").runbook_url == "https://wiki/r/OpenStackServiceDown"
    assert [r for r in agent.store.actions(site="lab") if r.trigger == "alertmanager"] == []
    assert agent.store.unprocessed_deliveries() == []


def test_firing_alert_fixes_the_node_through_the_ledger_and_resolved_closes_it(bed: Testbed, agent: Agent) -> None:
    (node,) = break_nodes(bed, "error-teardown")
    firing = alert("IronicNodeError", node)
    assert agent.post(payload(firing)).status_code == 200
    agent.processed()
    incident = only_incident(agent.store, "IronicNodeError")
    assert [e.kind for e in incident.events] == ["received", "action"], incident.events
    (row,) = ledger(agent.store, node)
    assert (row.hammer, row.kind, row.mode, row.outcome) == ("error-resetter", "undeploy", "apply", "succeeded")
    assert incident.action_id == row.id and f"ledger #{row.id}" in incident.events[1].detail
    assert row.before is not None and row.before["provision_state"] == "error"
    wait_states(bed, [node], {"available"})

    resolved = alert("IronicNodeError", node, status="resolved")
    assert agent.post(payload(resolved, status="resolved")).status_code == 200
    assert agent.post(payload(resolved, status="resolved")).status_code == 200  # re-sent: nothing more
    agent.processed()
    closed = agent.store.incident(incident.id)
    assert closed is not None and closed.status == "resolved" and closed.resolved_at is not None
    assert [e.kind for e in closed.events] == ["received", "action", "resolved", "duplicate"]
    assert agent.store.incidents(open_only=True) == []
    assert len(ledger(agent.store, node)) == 1

    cli = ("--config", str(agent.settings.state_dir / "hammersmith.yaml"), "incidents")
    listed = json.loads(hammersmith(*cli, "--json", cwd=agent.settings.state_dir).stdout)
    assert [(i["id"], i["status"], i["action_id"]) for i in listed] == [(incident.id, "resolved", row.id)]
    assert hammersmith(*cli, "--open", "--json", cwd=agent.settings.state_dir).stdout.strip() == "[]"
    table = hammersmith(*cli, cwd=agent.settings.state_dir).stdout
    assert "received -> action -> resolved (+1 duplicate)" in table and f"{PUBLIC}/runbooks/IronicNodeError" in table
    shown = hammersmith(*cli, "show", str(incident.id), cwd=agent.settings.state_dir)
    assert shown.returncode == 0 and f"ledger row #{row.id}" in shown.stdout and "duplicate" in shown.stdout
    missing = hammersmith(*cli, "show", "99999", cwd=agent.settings.state_dir)
    assert missing.returncode != 0 and "no incident 99999" in missing.stderr


def test_the_cli_prints_alert_values_literally_never_as_markup(agent: Agent) -> None:
    """Alert names, labels, annotations, node, runbook URL and set-aside fields are anyone's text: `[/]` and
    `[link=...]` print as sent, and never crash the table."""
    odd = alert(
        "[/]",
        "[red]n",
        fingerprint="markup0000000001",
        annotations={"summary": "[link=http://evil]click[/link]", "runbook_url": "http://x/[/]"},
    )
    odd["labels"]["zteam"] = "[bold]ops\\"  # last label: a trailing backslash, shown once
    bad = alert("[link=x]", fingerprint="markup0000000002")
    bad["labels"]["[/]"] = "\ud800"
    raw = json.dumps(payload(odd, alert("[b]", fingerprint="markup0000000003"))).replace(
        '"alerts": [', '"alerts": [' + json.dumps(bad) + ", "
    )
    assert agent.post(raw.encode()).status_code == 200
    agent.processed()
    row = only_incident(agent.store, "[/]")
    assert only_incident(agent.store, "[b]").runbook_url == f"{PUBLIC}/runbooks/%5Bb%5D"  # the name is quoted
    cli = ("--config", str(agent.settings.state_dir / "hammersmith.yaml"), "incidents")
    listed = hammersmith(*cli, cwd=agent.settings.state_dir)
    assert listed.returncode == 0, listed.stderr
    for literal in ("[/]", "[b]", "[red]n", "http://x/[/]"):
        assert literal in listed.stdout, literal
    shown = hammersmith(*cli, "show", str(row.id), cwd=agent.settings.state_dir)
    assert shown.returncode == 0, shown.stderr
    for literal in ("Incident", "[/] at site lab", "[link=http://evil]click[/link]", "zteam=[bold]ops\\\n", "[red]n"):
        assert literal in shown.stdout, literal
    dead = hammersmith(*cli, "--dead", cwd=agent.settings.state_dir)
    assert dead.returncode == 0 and "alerts.0.labels.[/]" in dead.stdout, dead.stdout + dead.stderr


def test_same_alert_from_three_threads_acts_once(bed: Testbed, agent: Agent) -> None:
    (node,) = break_nodes(bed, "error-teardown")
    same = Alert.model_validate(alert("IronicNodeError", node, fingerprint="threads000000001"))
    barrier = threading.Barrier(3)

    def deliver(_: int) -> dict[str, Any]:
        barrier.wait()
        return agent.worker.processor.handle(same)

    with ThreadPoolExecutor(3) as pool:
        events = sorted(r["event"] for r in pool.map(deliver, range(3)))
    assert events == ["action", "duplicate", "duplicate"]
    assert [r.outcome for r in ledger(agent.store, node)] == ["succeeded"]
    wait_states(bed, [node], {"available"})


def test_same_alert_posted_three_times_concurrently_acts_once(bed: Testbed, agent: Agent) -> None:
    """Over a real HTTP server, as Alertmanager's HA peers would deliver it."""
    (node,) = break_nodes(bed, "deploy-failed")
    body = payload(alert("IronicNodeDeployFailed", node, fingerprint="http000000000001"))
    server = Server(agent.client.app, "127.0.0.1", 0).start()  # type: ignore[arg-type]
    try:
        barrier = threading.Barrier(3)

        def post(_: int) -> int:
            barrier.wait()
            headers = {"Authorization": f"Bearer {TOKEN}"}
            return httpx.post(f"{server.url}{webhook.PATH}", json=body, headers=headers, timeout=10).status_code

        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(post, range(3))) == [200, 200, 200]
    finally:
        server.stop()
    agent.processed()
    incident = only_incident(agent.store, "IronicNodeDeployFailed")
    assert sorted(e.kind for e in incident.events) == ["action", "duplicate", "duplicate", "received"]
    assert [r.outcome for r in ledger(agent.store, node)] == ["succeeded"]
    wait_states(bed, [node], {"available"})


def test_hands_off_nodes_get_no_action_with_the_safety_layers_reason(bed: Testbed, agent: Agent) -> None:
    user = fault_nodes(bed, "user-active")[0]
    operator = fault_nodes(bed, "operator-maintenance")
    before = {n: bed.node_raw(n)["provision_state"] for n in [user, *operator]}
    alerts = [alert("IronicNodeError", n, fingerprint=f"handsoff{i:08}") for i, n in enumerate([user, *operator])]
    assert agent.post(payload(*alerts)).status_code == 200
    agent.processed()
    details = {r.node: r.events[-1] for r in agent.store.incidents()}
    assert {e.kind for e in details.values()} == {"no_action"}
    assert details[user].detail.startswith("refused by the safety layer: user instance")
    for n in operator:
        assert details[n].detail.startswith("refused by the safety layer: operator maintenance")
    assert {n: bed.node_raw(n)["provision_state"] for n in before} == before
    assert all(ledger(agent.store, n) == [] for n in before)


def test_the_agent_process_serves_the_webhook(bed: Testbed, tmp_path: Path) -> None:
    """`hammersmith run`: the webhook answers while the agent sweeps, and the incident worker acts."""
    (node,) = break_nodes(bed, "error-teardown")
    path = agent_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["sites"]["lab"]["policy"]["hammers"]["error-resetter"] = "observe"  # the sweep must not fix it first
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hammersmith", "--config", str(path), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url = ""
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "serving metrics on " in line:
                url = line.split("serving metrics on ")[1].strip().removesuffix("/metrics")
        assert url, "the agent never said where it serves"
        body = payload(alert("IronicNodeError", node, fingerprint="process000000001"))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.post(f"{url}{webhook.PATH}", json=body, headers=headers, timeout=10).status_code == 200
        assert httpx.post(f"{url}{webhook.PATH}", json=body, timeout=10).status_code == 401
        cli = ("--config", str(path), "incidents", "--json")
        events: list[str] = []
        while time.monotonic() < deadline and len(events) < 2:
            listed = json.loads(hammersmith(*cli, cwd=tmp_path).stdout)
            events = [e["kind"] for e in listed[0]["events"]] if listed else []
            time.sleep(0.5)
        assert events == ["received", "action"]  # observe mode: the ledger says what it would do
        assert 'hammersmith_webhook_requests_total{code="200"} 1.0' in httpx.get(f"{url}/metrics").text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    store = open_store(config.load(path).effective_store_url)
    try:
        assert [(r.mode, r.outcome) for r in ledger(store, node)] == [("observe", "observed")]
    finally:
        store.close()
    assert bed.node_raw(node)["provision_state"] == "error"  # observed, not touched


def test_a_delivery_left_unprocessed_is_processed_at_start(tmp_path: Path) -> None:
    """A stopped agent's backlog: stored deliveries are processed at the next start, and an incident it
    opened but never decided on (stopped between the two) is decided then, once."""
    settings_ = config.load(agent_config(tmp_path))
    store = open_store(settings_.effective_store_url, settings_.state_dir)
    try:
        unknown = alert("SomethingNobodyKnows", "node-002")
        interrupted = alert("IronicNodeError", fingerprint="interrupted00001")  # mapped; no node label
        incident, _ = store.open_incident(
            site="lab",
            alertname="IronicNodeError",
            fingerprint="interrupted00001",
            starts_at=T0,
            status="firing",
            labels=interrupted["labels"],
            annotations={},
            node=None,
            hammer="error-resetter",
            runbook_url=None,
            detail="opened by the agent that stopped",
        )
        left = [store.record_delivery(payload(unknown)), store.record_delivery(payload(interrupted))]
        left.append(store.record_delivery(payload(interrupted)))  # its re-delivery, also left over
        left.append(store.record_delivery({"version": "4", "alerts": "stored under an older schema"}))
        worker = IncidentWorker(IncidentProcessor(settings_, "lab", store)).start()
        worker.queue.join()
        worker.stop()
        assert store.unprocessed_deliveries() == [] and len(left) == 4  # the odd one is set aside, not retried
        assert sorted(r.alertname for r in store.incidents()) == ["IronicNodeError", "SomethingNobodyKnows"]
        decided = store.incident(incident)
        assert decided is not None
        assert [e.kind for e in decided.events] == ["received", "no_action", "duplicate"]
        assert "no node label" in decided.events[1].detail
    finally:
        store.close()


# -- fuzz ------------------------------------------------------------------------------------------

text = st.text(max_size=20)
labels = st.dictionaries(st.sampled_from(["severity", "site", "job", "x"]) | text, text, max_size=4)
valid_alert = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]),
        "labels": labels.map(lambda d: {**d, "alertname": "Fuzz" + "".join(c for c in d.get("x", "") if c.isalnum())}),
        "annotations": st.dictionaries(text, text, max_size=3),
        "startsAt": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        "endsAt": st.just("0001-01-01T00:00:00Z"),
        "generatorURL": text,
        "fingerprint": st.text("0123456789abcdef", min_size=1, max_size=16),
    }
)
valid_payload = st.lists(valid_alert, max_size=4).map(lambda alerts: payload(*alerts))
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid payload with one field (top level or in an alert) replaced, removed or renamed."""
    body = draw(valid_payload)
    target = body
    if body["alerts"] and draw(st.booleans()):
        target = body["alerts"][draw(st.integers(0, len(body["alerts"]) - 1))]
    key = draw(st.sampled_from(sorted(target)))
    how = draw(st.sampled_from(["replace", "remove", "rename"]))
    value = target.pop(key)
    if how == "replace":
        target[key] = draw(junk)
    elif how == "rename":
        target[key.upper()] = value
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(valid_payload, mutated(), junk, st.binary(max_size=200)))
def test_fuzz_random_payloads_never_500_and_valid_ones_are_accepted(agent: Agent, body: Any) -> None:
    answer = agent.post(body)
    assert answer.status_code in (200, 413, 422), answer.text
    if isinstance(body, bytes):
        return
    try:
        Envelope.model_validate(body)
    except ValidationError:
        assert answer.status_code in (413, 422)
        return
    if answer.status_code == 413:
        assert len(json.dumps(body)) > LIMIT
        return
    assert answer.status_code == 200
    aside = {a["alert"] for a in answer.json()["set_aside"]}
    for index, raw in enumerate(body["alerts"]):
        try:
            Alert.model_validate(raw)
        except ValidationError:
            assert index in aside
        else:
            assert index not in aside


# -- property: the route and the worker together ----------------------------------------------------------

INF = "@INF@"  # json.dumps cannot write 1e999 (inf); the raw body gets it in place of this marker
SEQUENCE = itertools.count()
edge_times = st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-11-25T12:00:00+14:00"])
good_alert = valid_alert.flatmap(
    lambda a: st.fixed_dictionaries(
        {
            "startsAt": st.just(a["startsAt"]) | edge_times,
            "extra": st.sampled_from([{}, {"unknown": INF}, {"unknown": {"deep": [INF, "\ud800"]}}]),
        }
    ).map(lambda e: {**a, "startsAt": e["startsAt"], **e["extra"]})
)
hostile_change = st.sampled_from(
    [
        ("startsAt", "0001-01-01T00:00:00+01:00"),
        ("startsAt", "9999-12-31T23:59:59-23:59"),
        ("endsAt", "9999-12-31T23:59:59-00:01"),
        ("labels", {"alertname": "X", "severity": "\ud800"}),
        ("labels", {"alertname": "X", "\udfff": "key"}),
        ("labels", {"alertname": "X", "severity": INF}),
        ("annotations", {"summary": INF}),
        ("generatorURL", "\ud800"),
        ("fingerprint", "../../etc"),
        ("status", "pending"),
        ("startsAt", None),
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mix=st.lists(st.tuples(st.booleans(), good_alert, hostile_change), min_size=1, max_size=6))
def test_property_valid_alerts_become_one_incident_each_and_hostile_ones_are_set_aside(
    agent: Agent, mix: list[tuple[bool, dict[str, Any], tuple[str, Any]]]
) -> None:
    """Generated mixes of valid and hostile alerts, through the real route, store and worker: each valid alert is
    exactly one incident, each hostile one is set aside with its index, and nothing is left unprocessed or dead."""
    run = next(SEQUENCE)
    alerts = [
        {**good, "fingerprint": f"p{run:06}x{i:02}", **({} if ok else dict([change]))}
        for i, (ok, good, change) in enumerate(mix)
    ]
    raw = json.dumps(payload(*alerts)).replace(f'"{INF}"', "1e999").encode()
    answer = agent.post(raw)
    assert answer.status_code == 200, answer.text
    valid = {i for i, (ok, _, _) in enumerate(mix) if ok}
    assert answer.json()["alerts"] == len(valid)
    assert {a["alert"] for a in answer.json()["set_aside"]} == set(range(len(mix))) - valid
    agent.processed()
    mine = [r for r in agent.store.incidents(limit=100_000) if r.fingerprint.startswith(f"p{run:06}x")]
    assert sorted(r.fingerprint for r in mine) == sorted(alerts[i]["fingerprint"] for i in valid)
    for row in mine:
        sent = alerts[int(row.fingerprint[-2:])]
        assert (
            row.starts_at == datetime.fromisoformat(sent["startsAt"]) and row.alertname == sent["labels"]["alertname"]
        )
    assert agent.store.unprocessed_deliveries() == [] and all(d.dead_at is None for d in agent.store.dead_deliveries())
