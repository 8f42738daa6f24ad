"""`hammersmith incidents resolve`: a person closes an incident Alertmanager opened through the real webhook, with the
minutes it took; the incident, its timeline and the ledger (with the person's name) say so, in one transaction."""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from hammersmith import config
from hammersmith.config import Settings
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.react.incidents import IncidentProcessor, IncidentWorker
from hammersmith.store import Store, open_store
from hammersmith.web import webhook
from hammersmith.web.app import create_app
from tests.conftest import hammersmith
from tests.react.conftest import write_config

TOKEN = "resolve-webhook-token-0123456789"
STARTS = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@dataclass
class Agent:
    client: TestClient
    store: Store
    worker: IncidentWorker
    settings: Settings
    config: Path

    def fire(self, name: str, node: str, status: str = "firing") -> int:
        """Alertmanager's delivery of one alert, through the webhook; the incident's id once processed."""
        ends = (STARTS + timedelta(minutes=30)).isoformat() if status == "resolved" else "0001-01-01T00:00:00Z"
        alert = {
            "status": status,
            "labels": {"alertname": name, "site": "lab", "node": node, "severity": "warning"},
            "annotations": {"summary": f"{name} on {node}"},
            "startsAt": STARTS.isoformat(),
            "endsAt": ends,
            "generatorURL": "http://prometheus/graph",
            "fingerprint": f"{abs(hash((name, node))):016x}"[:16],
        }
        body = {
            "version": "4", "groupKey": "{}", "truncatedAlerts": 0, "status": status, "receiver": "hammersmith",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
            "alerts": [alert],
        }  # fmt: skip
        answer = self.client.post(webhook.PATH, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        self.worker.queue.join()
        (row,) = [r for r in self.store.incidents() if r.alertname == name and r.node == node]
        return row.id

    def cli(self, *args: str) -> Any:
        return hammersmith("--config", str(self.config), *args, cwd=self.config.parent)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    """The agent's webhook in-process (store, incident worker, app): the alerts here map to no hammer, so no cloud
    is called; the incidents are stored exactly as in production."""
    path = write_config(tmp_path, {})
    raw = yaml.safe_load(path.read_text())
    raw["http"].update(webhook_token=TOKEN)
    path.write_text(yaml.safe_dump(raw))
    settings = config.load(path)
    store = open_store(settings.effective_store_url, settings.state_dir)
    worker = IncidentWorker(IncidentProcessor(settings, "lab", store)).start()
    try:
        with TestClient(create_app(Exporter(Telemetry(["lab"])), settings=settings, worker=worker)) as client:
            yield Agent(client, store, worker, settings, path)
    finally:
        worker.stop()
        store.close()


def hand_rows(store: Store) -> list[Any]:
    return sorted(store.actions(hammer="by-hand"), key=lambda r: r.id)


def test_resolving_a_firing_incident_by_hand_closes_it_with_its_timeline_and_ledger_row(agent: Agent) -> None:
    incident = agent.fire("IronicNodeCleanFailed", "node-007")
    assert agent.store.incident(incident).status == "firing"  # type: ignore[union-attr]

    result = agent.cli("incidents", "resolve", str(incident), "--minutes", "25", "--note", "reseated the BMC", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["already_resolved"] is False
    assert (shown["status"], shown["resolved_by"], shown["manual_minutes"], shown["note"]) == (
        "resolved",
        getpass.getuser(),  # --by defaults to the login name
        25.0,
        "reseated the BMC",
    )
    assert [e["kind"] for e in shown["events"]] == ["received", "no_action", "resolved"]
    assert "resolved by hand" in shown["events"][-1]["detail"] and "25 min" in shown["events"][-1]["detail"]

    stored = agent.store.incident(incident)
    assert stored is not None and stored.resolved_at is not None and stored.manual_minutes == 25.0
    (row,) = hand_rows(agent.store)
    assert (row.site, row.node_uuid, row.node_name, row.kind, row.mode, row.outcome, row.agent, row.trigger) == (
        "lab",
        f"incident/{incident}",
        "node-007",
        "resolve",
        "manual",
        "recorded",
        getpass.getuser(),
        "cli",
    )
    assert row.params == {
        "incident": incident,
        "alertname": "IronicNodeCleanFailed",
        "minutes": 25.0,
        "note": "reseated the BMC",
        "already_resolved": False,
    }
    # the ledger command shows it, findable by the node the alert named
    listed = json.loads(agent.cli("ledger", "--node", "node-007", "--json").stdout)
    assert [(r["hammer"], r["agent"]) for r in listed] == [("by-hand", getpass.getuser())]
    # and the toil ranking learns the hand-fix time from it
    ranked = json.loads(agent.cli("toil", "--json").stdout)
    clean = next(e for e in ranked if e["name"] == "IronicNodeCleanFailed")
    assert (clean["hand_fixes"], clean["manual_minutes"], clean["occurrences"]) == (1, 25.0, 1)


def test_an_incident_already_resolved_still_records_the_time_and_says_so(agent: Agent) -> None:
    incident = agent.fire("ProbeFailing", "-")
    agent.fire("ProbeFailing", "-", status="resolved")  # Alertmanager saw it clear first
    before = agent.store.incident(incident)
    assert before is not None and before.status == "resolved" and before.resolved_by is None

    result = agent.cli("incidents", "resolve", str(incident), "--minutes", "40", "--note", "restarted", "--by", "alice")
    assert result.returncode == 0, result.stderr
    assert "already resolved" in result.stdout and "40 min" in result.stdout
    again = agent.cli(
        "incidents", "resolve", str(incident), "--minutes", "5", "--note", "checked", "--by", "bob", "--json"
    )
    shown = json.loads(again.stdout)
    assert shown["already_resolved"] is True
    assert (shown["status"], shown["resolved_at"]) == ("resolved", before.resolved_at.isoformat())  # type: ignore[union-attr]
    assert (shown["resolved_by"], shown["manual_minutes"]) == ("alice, bob", 45.0)  # a person's time adds up
    assert shown["note"] == "restarted\nbob: checked"
    assert [e["kind"] for e in shown["events"]] == ["received", "no_action", "resolved", "hand_fix", "hand_fix"]
    assert [(r.kind, r.agent, r.params["already_resolved"]) for r in hand_rows(agent.store)] == [
        ("record-time", "alice", True),
        ("record-time", "bob", True),
    ]
    show = agent.cli("incidents", "show", str(incident))
    assert show.returncode == 0 and "hand_fix" in show.stdout and "bob recorded 5 min" in show.stdout


def test_two_people_resolving_at_once_close_it_once_and_both_times_count(agent: Agent) -> None:
    incident = agent.fire("LaunchFailures", "-")
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def resolve(name: str) -> None:
        store = open_store(agent.settings.effective_store_url)
        try:
            barrier.wait()
            results[name] = store.resolve_incident_by_hand(incident, by=name, minutes=10, note=f"{name} fixed it")
        finally:
            store.close()

    threads = [threading.Thread(target=resolve, args=(name,)) for name in ("carol", "dave")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    final = agent.store.incident(incident)
    assert final is not None and final.manual_minutes == 20.0
    kinds = [e.kind for e in final.events]
    assert kinds.count("resolved") == 1 and kinds.count("hand_fix") == 1
    assert sorted(r.kind for r in hand_rows(agent.store)) == ["record-time", "resolve"]


def test_wrong_input_is_refused_before_anything_is_written(agent: Agent) -> None:
    incident = agent.fire("SmokeScenarioFailing", "-")
    for args, says in (
        (("--minutes", "-3", "--note", "x"), "--minutes"),
        (("--minutes", "nan", "--note", "x"), "--minutes"),
        (("--minutes", "3", "--note", "  "), "--note"),
        (("--minutes", "3", "--note", "x", "--by", " "), "--by"),
    ):
        result = agent.cli("incidents", "resolve", str(incident), *args)
        assert result.returncode == 2 and says in result.stderr, (args, result.stderr)
    missing = agent.cli("incidents", "resolve", "99999", "--minutes", "3", "--note", "x")
    assert missing.returncode != 0 and "no incident 99999" in missing.stderr
    assert agent.store.resolve_incident_by_hand(99999, by="x", minutes=1, note="n") is None
    with pytest.raises(ValueError, match="minutes"):
        agent.store.resolve_incident_by_hand(incident, by="x", minutes=-1, note="n")
    assert agent.store.incident(incident).status == "firing"  # type: ignore[union-attr]
    assert hand_rows(agent.store) == []
