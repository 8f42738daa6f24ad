"""mysql-replication: a database replica whose replication threads stopped; restarted only when the link was lost."""

from __future__ import annotations

import time
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from openstack.connection import Connection
from openstack.exceptions import NotFoundException

from hammersmith.cloud import replication
from hammersmith.cloud.connection import SiteConnection
from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding
from hammersmith.errors import CloudError
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Live, ObjectHammer, hammer

#: how long START REPLICA may take to reconnect before the verification judges the replica (it returns at once,
#: the IO thread then says Connecting: judged that early, a restart that works would count as ineffective)
CONNECT_SECONDS = 10.0
#: why a permanent cause goes to a human: a restart fails on the same event, or hides a diverged replica
NO_RESTART = "will not restart replication (no restart fixes this)"


def status_of(subject: dict[str, Any]) -> replication.ReplicaStatus:
    return replication.ReplicaStatus(**{f.name: subject[f.name] for f in fields(replication.ReplicaStatus)})


def _thread(name: str, running: bool, errno: int, error: str) -> str | None:
    if running:
        return None
    return f"{name} thread: {errno} {error}" if errno else f"{name} thread stopped without an error (STOP REPLICA?)"


@hammer
class MySQLReplication(ObjectHammer):
    """Start replication again on a replica whose IO thread lost its primary (a transient cause); escalate with the
    error for anything else (a duplicate key: the replica diverged, and a restart would fail on the same row)."""

    name = "mysql-replication"
    subject = "replica"
    reads = ("mysql",)
    alert_label = "instance"  # MySQLReplicationBroken carries the exporter's instance, which the config maps
    kept = ("io_running", "sql_running", "last_io_errno", "last_sql_errno", "seconds_behind_master")

    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        found = (self.subject_of(r, r["name"]) for r in snapshot.data.get("replicas") or [])
        return {s["uuid"]: s for s in found}

    def judge(self, subject: dict[str, Any], context: dict[str, Any], policy: Policy, now: datetime) -> str | None:
        """What stopped and with which error; an unreadable replica is a finding too (nothing to act on)."""
        if subject.get("error"):
            return f"replica unreadable: {subject['error']}"
        status = status_of(subject)
        if replication.cause(status) == "ok":
            return None
        stopped = [
            _thread("IO", status.io_running, status.last_io_errno, status.last_io_error),
            _thread("SQL", status.sql_running, status.last_sql_errno, status.last_sql_error),
        ]
        return "replication stopped: " + "; ".join(s for s in stopped if s)

    def _kind(self, subject: dict[str, Any]) -> str | None:
        """start-replication for a lost link, escalate for any other cause, None when unreadable or healthy."""
        if subject.get("error"):
            return None
        cause = replication.cause(status_of(subject))
        return {"transient": "start-replication", "permanent": "escalate"}.get(cause)

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        kind = self._kind(node)
        if kind is None:
            return []
        params = {"last_io_errno": node["last_io_errno"], "last_sql_errno": node["last_sql_errno"]}
        return [Action(self.name, found.node_uuid, found.node_name, kind, found.summary, params)]

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        """A lost link that became a failed row since the snapshot is no longer a restart's to fix (nor the reverse)."""
        return self._kind(node) == action.kind

    def escalate_now(self, action: Action) -> str | None:
        return NO_RESTART if action.kind == "escalate" else None

    def read(self, site: SiteConnection, key: str) -> Live:
        """The replica's status now, by ledger key or by the exporter's `instance` label (an alert's)."""
        ref = self.ident(key)
        replica = next((r for r in site.site.replicas if ref in (r.name, r.instance)), None)
        if replica is None:
            raise NotFoundException(f"no replica {ref!r} in the site's replicas")
        try:
            found: dict[str, Any] = asdict(replication.status(replica, site.site.timeout_seconds))
        except CloudError as exc:
            found = {"error": str(exc)}
        subject = self.subject_of({"name": replica.name, **found}, replica.name)
        return Live(subject, [], datetime.now(UTC), {"replica": replica})

    def execute(self, conn: Connection, action: Action, live: Live, lease: safety.Lease) -> None:
        replica = live.context["replica"]
        replication.restart(replica)
        deadline = time.monotonic() + CONNECT_SECONDS
        while replication.cause(replication.status(replica)) != "ok" and time.monotonic() < deadline:
            lease.renew()
            time.sleep(0.5)
