"""The agent on PostgreSQL: real agent processes against the real Ironic bed, their store one database on the
session's real PostgreSQL server (the sweep, two agents at once, the webhook worker, reconciliation at start).
test_agent.py kills an agent mid-inspection on SQLite; here the intent left behind is written through the store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from hammersmith.react.sweep import agent_id
from hammersmith.store import Store, open_store
from hammersmith.store.models import Sweep
from hammersmith.web import webhook
from tests.conftest import Postgres, Testbed, hammersmith
from tests.react.conftest import applied, break_nodes, wait_states, write_config
from tests.react.test_webhook import TOKEN, agent_config, alert, payload

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

T = TypeVar("T")


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A database of its own for each test, on the session's PostgreSQL server."""
    return postgres.create_database(f"agent_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """The test's own view of the agents' PostgreSQL store (migrated here first: agents find it current)."""
    with closing(open_store(pg_url)) as store:
        yield store


def on_postgres(path: Path, url: str, sweep_interval: int | None = None) -> Path:
    """Point an agent config at the PostgreSQL store (optionally with a sweep interval); return its path."""
    raw = yaml.safe_load(path.read_text())
    raw["store_url"] = url
    if sweep_interval is not None:
        raw["sites"]["lab"]["sweep_interval_seconds"] = sweep_interval
    path.write_text(yaml.safe_dump(raw))
    return path


def start(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """An agent process; what it says goes to a file (no pipe to fill while nobody reads)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hammersmith", "--config", str(config), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Stop an agent we started, by its PID, if it still runs; reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    proc.wait(timeout=60)


def wait(what: str, probe: Callable[[], T], timeout: float = 60, log: Path | None = None) -> T:
    """Poll until `probe` answers; on timeout, say what was awaited (and the end of the agent's log)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(0.3)
    return value


def agent_address(log: Path) -> str:
    """The base URL a running agent logs on start (its config listens on port 0)."""

    def logged() -> str:
        for line in log.read_text(errors="replace").splitlines():
            if "serving metrics on " in line:
                return line.split("serving metrics on ")[1].strip().removesuffix("/metrics")
        return ""

    return wait("the agent to say where it serves", logged, log=log)


def test_sweep_on_postgres_fixes_injected_faults(bed: Testbed, tmp_path: Path, pg_store: Store, pg_url: str) -> None:
    broken = break_nodes(bed, "error-teardown", count=2) + break_nodes(bed, "deploy-failed")
    config = on_postgres(write_config(tmp_path, {"error-resetter": "apply"}), pg_url)
    swept = hammersmith("--config", str(config), "sweep", "--once", "--apply", "--json", cwd=tmp_path)
    assert swept.returncode == 0, swept.stderr
    wait_states(bed, broken, {"available"}, timeout=120)
    for name in broken:
        (outcome,) = applied(pg_store, name)
        assert outcome not in ("in_flight", "failed"), f"{name}: {outcome}"
    last = pg_store.last_sweep("lab")
    assert last is not None and last.ok
    assert not (tmp_path / "hammersmith.sqlite").exists()  # the ledger is in PostgreSQL, not the default SQLite


def test_two_agents_on_one_postgres_never_act_on_one_node_twice(
    bed: Testbed, tmp_path: Path, pg_store: Store, pg_url: str
) -> None:
    broken = break_nodes(bed, "error-teardown", count=3)
    config = on_postgres(write_config(tmp_path, {"error-resetter": "apply"}), pg_url)
    agents = [start(config, tmp_path / f"agent-{i}.log", "sweep", "--once", "--apply", "--json") for i in range(2)]
    try:
        for proc in agents:
            proc.wait(timeout=120)
    finally:
        for proc in agents:
            stop(proc)
    assert [proc.returncode for proc in agents] == [0, 0], [(tmp_path / f"agent-{i}.log").read_text() for i in (0, 1)]
    for name in broken:
        assert len(applied(pg_store, name)) == 1, f"{name} acted on: {applied(pg_store, name)}"
    with pg_store.session() as session:  # both agents swept, into this one database
        assert session.scalar(select(func.count()).select_from(Sweep).where(Sweep.site == "lab")) == 2
    wait_states(bed, broken, {"available"}, timeout=120)


def test_run_agent_on_postgres_acts_on_an_alertmanager_webhook(
    bed: Testbed, tmp_path: Path, pg_store: Store, pg_url: str
) -> None:
    """`hammersmith run` on PostgreSQL: the webhook stores the alert, the worker runs the mapped hammer."""
    config = on_postgres(agent_config(tmp_path), pg_url, sweep_interval=3600)  # one sweep, at start
    raw = yaml.safe_load(config.read_text())
    raw["sites"]["lab"]["smoke"] = {"cheap_interval_seconds": 0, "expensive_interval_seconds": 0}  # no deploys
    config.write_text(yaml.safe_dump(raw))
    log = tmp_path / "agent.log"
    proc = start(config, log, "run", "--json")
    try:
        url = agent_address(log)
        wait("the agent's first sweep", lambda: pg_store.last_sweep("lab"), log=log)
        (node,) = break_nodes(bed, "error-teardown")  # after the sweep: only the alert can fix it now
        body = payload(alert("IronicNodeError", node, fingerprint="postgres00000001"))
        answer = httpx.post(f"{url}{webhook.PATH}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert answer.status_code == 200, answer.text

        def settled() -> list[Any]:
            rows = [r for r in pg_store.actions(site="lab", node=node) if r.trigger == "alertmanager"]
            return rows if rows and all(r.outcome != "in_flight" for r in rows) else []

        (row,) = wait("the worker's ledger row", settled, log=log)
        assert (row.hammer, row.kind, row.mode) == ("error-resetter", "undeploy", "apply")
        assert applied(pg_store, node) == [row.outcome] and row.outcome != "failed"
        # the ledger row settles before the timeline's decision is written: wait for that too
        (incident,) = wait("the incident's decision", lambda: [i for i in pg_store.incidents() if len(i.events) > 1])
        assert [e.kind for e in incident.events] == ["received", "action"] and incident.action_id == row.id
        wait("the delivery marked processed", lambda: pg_store.unprocessed_deliveries() == [])
        assert pg_store.dead_deliveries() == []
        wait_states(bed, [node], {"available"}, timeout=120)
    finally:
        stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, log.read_text()


def test_in_flight_rows_of_a_dead_agent_are_reconciled_by_the_next_agent(
    bed: Testbed, tmp_path: Path, pg_store: Store, pg_url: str
) -> None:
    """Intents in PostgreSQL from a stopped agent (a PID of this host that has exited) are reconciled by the next
    agent, live state recorded and never called again; one from an agent still running is left to it."""
    dead = subprocess.Popen([sys.executable, "-c", ""], stdin=subprocess.DEVNULL)
    dead.wait(timeout=60)
    query = "/nodes?fields=uuid,name,provision_state,maintenance,instance_uuid"
    listed = bed.conn.baremetal.get(query, microversion="1.78").json()
    healthy = sorted(
        (n["name"], n["uuid"])
        for n in listed["nodes"]
        if n["provision_state"] == "available" and not n["maintenance"] and not n["instance_uuid"]
    )
    (gone, gone_uuid), (running, running_uuid) = healthy[:2]
    intents = {
        name: pg_store.begin_action(
            site="lab",
            hammer="error-resetter",
            node_uuid=uuid_,
            node_name=name,
            trigger="sweep",
            kind="undeploy",
            params={},
            before={"provision_state": "error"},
            agent=agent,
        )
        for name, uuid_, agent in (
            (gone, gone_uuid, f"{socket.gethostname()}:{dead.pid}"),
            (running, running_uuid, agent_id()),  # this test's own process: alive
        )
    }
    config = on_postgres(write_config(tmp_path, {"error-resetter": "apply"}), pg_url)
    swept = hammersmith("--config", str(config), "sweep", "--once", "--apply", "--json", cwd=tmp_path)
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["reconciled"] == 1
    assert applied(pg_store, gone) == ["reconciled"]  # recorded once, never called again
    (row,) = pg_store.actions(node=gone)
    assert row.id == intents[gone] and row.finished_at is not None
    assert row.after is not None and row.after["provision_state"] == "available"  # the live state, not the intent's
    assert [r.id for r in pg_store.in_flight("lab")] == [intents[running]]  # its agent (this test) still runs
    assert bed.node_raw(gone)["provision_state"] == "available"
