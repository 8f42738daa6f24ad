"""mysql-replication on the testbed's real MariaDB primary and replica (`testbed up --with replication`): a lost link
is found, observed, restarted and verified (from a sweep and from the MySQLReplicationBroken alert through the real
webhook); a duplicate key, or a thread an operator stopped, is never restarted: escalated once, with its error."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from hammersmith import config
from hammersmith.cloud import replication
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.react.incidents import IncidentProcessor, IncidentWorker
from hammersmith.store import open_store
from hammersmith.testbed import lifecycle
from hammersmith.testbed.ironic import CLOUD_NAME
from hammersmith.testbed.replication import DATABASE, TABLE
from hammersmith.web import webhook
from hammersmith.web.app import create_app
from tests.conftest import ReplicationBed, hammersmith

HAMMER = "mysql-replication"
KEY = "replica/replica"
SITE = "testbed"
TOKEN = "test-webhook-token-0123456789"
TABLE_REF = f"`{DATABASE}`.`{TABLE}`"
FIELDS = ("io_running", "sql_running", "last_io_errno", "last_sql_errno", "seconds_behind_master")


@pytest.fixture
def bed(replication_bed: ReplicationBed) -> ReplicationBed:
    """The session's replication tier, by this module's short name."""
    return replication_bed


def write_config(bed: ReplicationBed, directory: Path, notify: list[str] | None = None) -> Path:
    """The replica in the site's config, the hammer in apply mode, the alert mapped to it; a store of its own."""
    directory.mkdir(exist_ok=True)
    policy = {"grace_minutes": 0, "hammers": {HAMMER: "apply"}, "breaker": {"max_percent": 100}}
    site = {
        "cloud": CLOUD_NAME,
        "replicas": [bed.endpoints.replica_config()],
        "notify": notify or [],
        "alerts": {"MySQLReplicationBroken": HAMMER},
        "policy": policy,
    }
    http = {"listen": "127.0.0.1:0", "webhook_token": TOKEN}
    path = directory / "hammersmith.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(directory), "http": http, "sites": {SITE: site}}))
    return path


def run(bed: ReplicationBed, path: Path, *args: str) -> dict[str, Any]:
    done = hammersmith("--config", str(path), *args, "--json", cwd=bed.workdir)
    assert done.returncode in (0, 1), done.stderr
    return dict(json.loads(done.stdout))


def ours(report: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [item for item in report[key] if (item.get("hammer") or item.get("check")) == HAMMER]


def ledger(bed: ReplicationBed, path: Path) -> list[dict[str, Any]]:
    done = hammersmith("--config", str(path), "ledger", "--hammer", HAMMER, "--json", cwd=bed.workdir)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def status(bed: ReplicationBed) -> replication.ReplicaStatus:
    return replication.status(bed.replica)


def starts(bed: ReplicationBed) -> int:
    """START SLAVE statements the replica has run (its own counter): proof that nobody restarted it."""
    return int(bed.server.replica.sql("SHOW GLOBAL STATUS LIKE 'Com_start_slave'").split()[-1])


def write_on_primary(bed: ReplicationBed, note: str) -> int:
    key = 1 + int(bed.server.primary.sql(f"SELECT COALESCE(MAX(id), 0) FROM {TABLE_REF}").split()[-1])
    bed.server.primary.sql(f"INSERT INTO {TABLE_REF} VALUES ({key}, '{note}')")
    return key


def heal(bed: ReplicationBed) -> None:
    """What an operator does: remove a row written on the replica by hand (if any), start replication, wait."""
    if status(bed).last_sql_errno == 1062:
        key = int(bed.server.primary.sql(f"SELECT MAX(id) FROM {TABLE_REF}").split()[-1])
        bed.server.replica.sql(f"DELETE FROM {TABLE_REF} WHERE id = {key}")
    replication.restart(bed.replica)
    deadline = time.monotonic() + 30
    while replication.cause(status(bed)) != "ok":
        assert time.monotonic() < deadline, status(bed)
        time.sleep(0.2)


def alert(bed: ReplicationBed) -> dict[str, Any]:
    """MySQLReplicationBroken as Alertmanager sends it: the replica named only by its exporter's `instance`."""
    labels = {
        "alertname": "MySQLReplicationBroken",
        "severity": "critical",
        "site": SITE,
        "instance": bed.endpoints.instance,
        "job": "mysqld",
        "thread": "io",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="MySQLReplicationBroken"}',
        "status": "firing",
        "receiver": "hammersmith",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "replication broken"},
                "startsAt": datetime.now(UTC).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": f"{time.monotonic_ns():016x}"[-16:],
            }
        ],
    }


def test_mysql_replication_lost_link_is_observed_then_restarted_by_a_sweep_and_by_the_alert(
    bed: ReplicationBed, tmp_path: Path
) -> None:
    path = write_config(bed, tmp_path)
    lifecycle.inject(bed.workdir, "replication-connection-lost")
    try:
        broken = status(bed)
        assert not broken.io_running and broken.sql_running and replication.cause(broken) == "transient"
        (found,) = ours(run(bed, path, "check"), "findings")
        assert found["node"] == "replica" and found["node_uuid"] == KEY
        assert found["summary"].startswith(f"replication stopped: IO thread: {broken.last_io_errno} ")

        # observe (a sweep without --apply): "would start-replication", and the replica left as it is
        before = starts(bed)
        (observed,) = ours(run(bed, path, "sweep"), "actions")
        assert (observed["outcome"], observed["mode"], observed["kind"]) == ("observed", "observe", "start-replication")
        assert starts(bed) == before and status(bed) == broken
        (row,) = ledger(bed, path)
        assert row["outcome"] == "observed" and row["reason"].startswith("would start-replication: replication stopped")

        # apply: restarted, verified, and what the primary took meanwhile arrives
        missed = write_on_primary(bed, "written while the replica was cut off")
        (fixed,) = ours(run(bed, path, "sweep", "--apply"), "actions")
        assert (fixed["outcome"], fixed["kind"]) == ("fixed", "start-replication"), fixed
        assert fixed["before"] == {f: getattr(broken, f) for f in FIELDS}
        assert fixed["after"]["io_running"] and fixed["after"]["sql_running"] and fixed["after"]["last_io_errno"] == 0
        assert replication.cause(status(bed)) == "ok" and starts(bed) == before + 1
        bed.server.wait_for(f"SELECT COUNT(*) FROM {TABLE_REF} WHERE id = {missed}", "1")
        assert ledger(bed, path)[0]["outcome"] == "fixed"
        assert not ours(run(bed, path, "sweep", "--apply"), "findings")  # nothing left to find

        # the alert path: Alertmanager -> webhook -> incident -> the same hammer, by the exporter's instance label
        lifecycle.inject(bed.workdir, "replication-connection-lost")
        settings = config.load(path)
        store = open_store(settings.effective_store_url, settings.state_dir)
        worker = IncidentWorker(IncidentProcessor(settings, SITE, store)).start()
        try:
            with TestClient(create_app(Exporter(Telemetry([SITE])), settings=settings, worker=worker)) as client:
                answer = client.post(webhook.PATH, json=alert(bed), headers={"Authorization": f"Bearer {TOKEN}"})
                assert answer.status_code == 200, answer.text
                worker.queue.join()
            (incident,) = store.incidents()
            assert incident.node == bed.endpoints.instance and incident.hammer == HAMMER
            decided = [e for e in incident.events if e.kind in ("action", "no_action", "error")]
            assert [e.kind for e in decided] == ["action"], decided
            assert "mysql-replication start-replication replica: fixed" in decided[0].detail
            (acted,) = [r for r in store.actions(site=SITE, hammer=HAMMER) if r.trigger == "alertmanager"]
            assert acted.outcome == "fixed" and incident.action_id == acted.id
        finally:
            worker.stop()
            store.close()
        assert replication.cause(status(bed)) == "ok"
    finally:
        heal(bed)


def test_mysql_replication_broken_row_or_an_operators_stop_is_escalated_once_never_restarted(
    bed: ReplicationBed, tmp_path: Path, inbox: tuple[str, list[dict]]
) -> None:
    url, messages = inbox
    try:
        # an operator's STOP SLAVE (no error) is theirs to undo, not hammersmith's
        stopped = write_config(bed, tmp_path / "operator", [url])
        bed.server.replica.sql("STOP SLAVE SQL_THREAD")
        before = starts(bed)
        (action,) = ours(run(bed, stopped, "sweep", "--apply"), "actions")
        assert action["outcome"] == "escalated" and "SQL thread stopped without an error" in action["reason"]
        assert not status(bed).sql_running and starts(bed) == before
        heal(bed)

        # a row written on the replica by hand: the primary's insert of the same key stops the SQL thread (1062)
        path = write_config(bed, tmp_path / "duplicate", [url])
        lifecycle.inject(bed.workdir, "replication-duplicate-key")
        broken = status(bed)
        assert broken.last_sql_errno == 1062 and replication.cause(broken) == "permanent"
        (found,) = ours(run(bed, path, "check"), "findings")
        assert found["summary"].startswith("replication stopped: SQL thread: 1062 ")
        before, told = starts(bed), len(messages)

        (observed,) = ours(run(bed, path, "sweep"), "actions")
        assert (observed["outcome"], observed["kind"]) == ("observed", "escalate")
        assert observed["reason"].startswith("would escalate: hammersmith: mysql-replication will not restart")

        (escalated,) = ours(run(bed, path, "sweep", "--apply"), "actions")
        assert (escalated["outcome"], escalated["kind"]) == ("escalated", "escalate"), escalated
        assert "SQL thread: 1062 " in escalated["reason"]
        assert starts(bed) == before and status(bed) == broken  # never restarted: still stopped on the same row
        row = ledger(bed, path)[0]
        assert row["outcome"] == "escalated" and "1062" in row["reason"]
        gave_up = [m for m in messages[told:] if "mysql-replication gave up on replica" in m["title"]]
        assert len(gave_up) == 1 and "1062" in gave_up[0]["message"]

        (again,) = ours(run(bed, path, "sweep", "--apply"), "actions")
        assert (again["outcome"], again["reason"]) == ("refused", "given up on earlier: waiting for a human")
        assert [r["outcome"] for r in ledger(bed, path)].count("escalated") == 1
        assert len([m for m in messages[told:] if "gave up on" in m["title"]]) == 1
        assert starts(bed) == before
    finally:
        heal(bed)
