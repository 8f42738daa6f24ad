"""Benchmark-only bulk fixture: N fake-hardware nodes with one port each, in seconds.

Enrolling through the API costs several requests and a cleaning cycle per node, so
10,000 nodes take many minutes on a 2-core machine. Instead a few nodes are enrolled
through the real API (so every column holds exactly what Ironic writes), Ironic is
stopped, and those rows are cloned in its SQLite database with INSERT ... SELECT,
changing only the primary and unique keys. Never use this outside bench/.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import httpx

from hammersmith.errors import TestbedError
from hammersmith.testbed import fleet
from hammersmith.testbed.ironic import Ironic, State

TEMPLATES = 3
#: keys Ironic keeps unique (or the primary key): set per clone, every other column is copied
NODE_KEYS = ("id", "uuid", "name", "instance_uuid")
PORT_KEYS = ("id", "uuid", "address", "name", "node_id")
HEADERS = {"X-OpenStack-Ironic-API-Version": "1.78"}


def node_name(index: int) -> str:
    return f"node-{index:05d}"


def mac(index: int) -> str:
    """Another OUI block than fleet.mac, so clones never collide with the templates."""
    return "52:54:01:" + ":".join(f"{b:02x}" for b in index.to_bytes(3, "big"))


def seed(ironic: Ironic, state: State, count: int) -> None:
    """Leave `ironic` running with exactly `count` nodes and `count` ports, checked via the API."""
    conn = fleet.connect(state)
    try:
        fleet.enrol(conn, TEMPLATES)
    finally:
        conn.close()
    settle(state.url)
    ironic.stop(state)
    clone(ironic.db, count)
    ironic.start(state)
    nodes, ports = count_listed(state.url, "nodes"), count_listed(state.url, "ports")
    if (nodes, ports) != (count, count):
        raise TestbedError(f"seeded {count} nodes but the API lists {nodes} nodes and {ports} ports")


def settle(url: str, timeout: float = 60.0) -> None:
    """Wait until the enrol's power-on finished: a clone of a locked row would stay locked."""
    deadline = time.monotonic() + timeout
    fields = "uuid,power_state,target_power_state,reservation,provision_state"
    with httpx.Client(base_url=url, headers=HEADERS, timeout=10.0) as http:
        while time.monotonic() < deadline:
            nodes = http.get("/v1/nodes", params={"fields": fields}).raise_for_status().json()["nodes"]
            if all(
                n["power_state"] == "power on"
                and not n["target_power_state"]
                and not n["reservation"]
                and n["provision_state"] == "available"
                for n in nodes
            ):
                return
            time.sleep(0.3)
    raise TestbedError(f"template nodes did not settle within {timeout:.0f} s")


def _columns(sql: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in sql.execute(f"PRAGMA table_info({table})")]


def _quote(columns: list[str], prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{c}"' for c in columns)


def clone(db: Path, count: int) -> None:
    """Replace the enrolled template nodes (and their ports) by `count` clones of them."""
    sql = sqlite3.connect(db)
    try:
        with sql:
            templates = [row[0] for row in sql.execute("SELECT id FROM nodes ORDER BY id")]
            per_node = dict(sql.execute("SELECT node_id, count(*) FROM ports GROUP BY node_id").fetchall())
            if len(templates) != TEMPLATES or any(per_node.get(t) != 1 for t in templates):
                raise TestbedError(f"expected {TEMPLATES} template nodes with one port each, found {per_node}")
            node_cols = [c for c in _columns(sql, "nodes") if c not in NODE_KEYS]
            port_cols = [c for c in _columns(sql, "ports") if c not in PORT_KEYS]
            sql.execute(
                "CREATE TEMP TABLE seed (i INTEGER PRIMARY KEY, template INTEGER, uuid TEXT, "
                "name TEXT, port_uuid TEXT, address TEXT)"
            )
            sql.executemany(
                "INSERT INTO seed VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (i, templates[(i - 1) % TEMPLATES], str(uuid.uuid4()), node_name(i), str(uuid.uuid4()), mac(i))
                    for i in range(1, count + 1)
                ),
            )
            cols, picked = _quote(node_cols), _quote(node_cols, "t.")
            sql.execute(
                f"INSERT INTO nodes (uuid, name, {cols}) SELECT s.uuid, s.name, {picked} "
                "FROM seed s JOIN nodes t ON t.id = s.template ORDER BY s.i"
            )
            cols, picked = _quote(port_cols), _quote(port_cols, "p.")
            sql.execute(
                f"INSERT INTO ports (uuid, address, node_id, {cols}) SELECT s.port_uuid, s.address, n.id, {picked} "
                "FROM seed s JOIN nodes n ON n.uuid = s.uuid JOIN ports p ON p.node_id = s.template "
                "ORDER BY s.i"
            )
            marks = ", ".join("?" * len(templates))
            tables = [row[0] for row in sql.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:  # ports, node_history, ... of the templates go with them
                if table != "nodes" and "node_id" in _columns(sql, table):
                    sql.execute(f"DELETE FROM {table} WHERE node_id IN ({marks})", templates)
            sql.execute(f"DELETE FROM nodes WHERE id IN ({marks})", templates)
    finally:
        sql.close()


def count_listed(url: str, resource: str) -> int:
    """How many items the API lists, following Ironic's `next` links."""
    total, path = 0, f"/v1/{resource}?fields=uuid&limit=1000"
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60.0) as http:
        while path:
            body = http.get(path).raise_for_status().json()
            total += len(body[resource])
            path = body.get("next")
    return total
