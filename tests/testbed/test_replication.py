"""The testbed's MariaDB primary and replica (`testbed up --with replication`), its two replication faults, and
hammersmith's reader and restarter (`cloud.replication`) against them, as the least-privilege account; the real
Prometheus scraping the real mysqld exporter fires MySQLReplicationBroken."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import httpx
import pymysql
import pytest
import yaml

from hammersmith import config
from hammersmith.cli.rules import RULES_DIR
from hammersmith.cloud import replication
from hammersmith.config import Replica
from hammersmith.testbed import lifecycle, process
from hammersmith.testbed.ironic import Ironic
from hammersmith.testbed.prometheus import Prometheus, missing_binaries
from hammersmith.testbed.replication import (
    DATABASE,
    HAMMER_USER,
    SERVICE,
    TABLE,
)
from tests.conftest import ReplicationBed

TABLE_REF = f"`{DATABASE}`.`{TABLE}`"


@pytest.fixture
def bed(replication_bed: ReplicationBed) -> ReplicationBed:
    """The session's replication tier, by this module's short name."""
    return replication_bed


def _next_id(bed: ReplicationBed) -> int:
    return 1 + int(bed.server.primary.sql(f"SELECT COALESCE(MAX(id), 0) FROM {TABLE_REF}").split()[-1])


def _wait_running(replica: Replica, timeout: float = 30) -> replication.ReplicaStatus:
    deadline = time.monotonic() + timeout
    while not ((status := replication.status(replica)).io_running and status.sql_running):
        assert time.monotonic() < deadline, f"replication did not run again within {timeout} s: {status}"
        time.sleep(0.2)
    return status


def _write_and_see(bed: ReplicationBed, note: str) -> None:
    """A row written on the primary arrives on the replica."""
    key = _next_id(bed)
    bed.server.primary.sql(f"INSERT INTO {TABLE_REF} VALUES ({key}, '{note}')")
    bed.server.wait_for(f"SELECT note FROM {TABLE_REF} WHERE id = {key}", note)


def _heal_duplicate(bed: ReplicationBed) -> None:
    """What an operator does about a row written on the replica by hand: delete it there, start replication."""
    key = _next_id(bed) - 1
    bed.server.replica.sql(f"DELETE FROM {TABLE_REF} WHERE id = {key}")
    replication.restart(bed.replica)
    _wait_running(bed.replica)


def test_up_records_what_a_client_needs(bed: ReplicationBed) -> None:
    ironic = Ironic(lifecycle.testbed_dir(bed.workdir))
    state = ironic.load_state()
    assert state is not None
    assert list(state.pids_of(SERVICE)) == ["replica", "primary", "exporter"]
    assert all(process.alive(pid) for pid in state.pids_of(SERVICE).values())
    assert state.port_of(SERVICE) == bed.endpoints.replica_port
    ends = bed.endpoints
    assert len({ends.replica_port, ends.primary_port, ends.exporter_port, state.port}) == 4
    assert ends.user == HAMMER_USER
    assert stat.S_IMODE(os.stat(ends.password_file).st_mode) == 0o600
    # every process listens on 127.0.0.1 only
    for port in (ends.replica_port, ends.primary_port, ends.exporter_port):
        assert process.listeners(port), port
    tables = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
    for port in (ends.replica_port, ends.primary_port, ends.exporter_port):
        local = {
            row.split()[1].rsplit(":", 1)[0]
            for row in tables.splitlines()[1:]
            if row.split()[3] == "0A" and int(row.split()[1].rsplit(":", 1)[1], 16) == port
        }
        assert local == {"0100007F"}, (port, local)  # 127.0.0.1, little-endian hex
    metrics = httpx.get(ends.exporter_url, timeout=10).text
    assert "\nmysql_up 1\n" in metrics and "mysql_slave_status_slave_io_running{" in metrics
    # hammersmith.yaml names the replica, and validates
    settings = config.load(bed.workdir / "hammersmith.yaml")
    (replica,) = settings.sites["testbed"].replicas
    assert replica == bed.replica
    assert replica.instance == f"127.0.0.1:{ends.exporter_port}"
    print(f"\nup --with replication (1 node): {bed.up_seconds:.1f} s")


def test_replication_carries_writes(bed: ReplicationBed) -> None:
    _write_and_see(bed, "written on the primary")
    status = replication.status(bed.replica)
    assert status.io_running and status.sql_running
    assert status.seconds_behind_master == 0
    assert replication.cause(status) == "ok"


def test_hammer_account_reads_status_and_starts_replication_only(bed: ReplicationBed) -> None:
    replication.restart(bed.replica)  # START SLAVE on running threads: allowed, changes nothing
    assert replication.cause(replication.status(bed.replica)) == "ok"
    password = bed.endpoints.password_file.read_text().strip()
    conn = pymysql.connect(host="127.0.0.1", port=bed.endpoints.replica_port, user=HAMMER_USER, password=password)
    try:
        with conn.cursor() as cursor:
            for statement in (
                f"SELECT * FROM {TABLE_REF}",
                f"INSERT INTO {TABLE_REF} VALUES (999999, 'no')",
                f"DELETE FROM {TABLE_REF}",
                "SELECT * FROM mysql.user",
                "CREATE DATABASE nope",
            ):
                with pytest.raises(pymysql.MySQLError) as refused:
                    cursor.execute(statement)
                assert refused.value.args[0] in (1044, 1142), (statement, refused.value)
            cursor.execute("SHOW GRANTS")
            grants = [row[0] for row in cursor.fetchall()]
    finally:
        conn.close()
    assert len(grants) == 1
    assert re.match(
        r"GRANT REPLICATION SLAVE ADMIN, SLAVE MONITOR ON \*\.\* TO `hammersmith_repl`@`127.0.0.1`", grants[0]
    )


def test_connection_lost_is_transient_and_restart_heals_it(bed: ReplicationBed) -> None:
    started = time.monotonic()
    lifecycle.inject(bed.workdir, "replication-connection-lost")
    took = time.monotonic() - started
    status = replication.status(bed.replica)
    assert not status.io_running and status.sql_running
    assert status.last_io_errno in replication.CONNECTION_LOST, status
    assert status.seconds_behind_master is None
    assert replication.cause(status) == "transient"
    # the primary is back (by its new PID, recorded) and takes writes; the replica does not see them yet
    key = _next_id(bed)
    bed.server.primary.sql(f"INSERT INTO {TABLE_REF} VALUES ({key}, 'while the replica was cut off')")
    replication.restart(bed.replica)
    _wait_running(bed.replica)
    bed.server.wait_for(f"SELECT note FROM {TABLE_REF} WHERE id = {key}", "while the replica was cut off")
    _write_and_see(bed, "after the restart")
    print(f"\nfault replication-connection-lost: {took:.1f} s")


def test_duplicate_key_is_permanent(bed: ReplicationBed) -> None:
    lifecycle.inject(bed.workdir, "replication-duplicate-key")
    status = replication.status(bed.replica)
    assert status.io_running and not status.sql_running
    assert status.last_sql_errno == 1062
    assert "1062" in status.last_sql_error and "Duplicate entry" in status.last_sql_error
    assert replication.cause(status) == "permanent"
    replication.restart(bed.replica)  # what a hammer must not do: the SQL thread stops on the same row again
    time.sleep(1)
    assert replication.cause(replication.status(bed.replica)) == "permanent"
    _heal_duplicate(bed)
    _write_and_see(bed, "after the duplicate was removed")


def test_a_fault_needs_a_healthy_replica(bed: ReplicationBed) -> None:
    bed.server.replica.sql("STOP SLAVE SQL_THREAD")
    try:
        status = replication.status(bed.replica)
        assert status.io_running and not status.sql_running and status.last_sql_errno == 0
        assert replication.cause(status) == "permanent"  # an operator's STOP SLAVE is not hammersmith's to undo
        with pytest.raises(Exception, match="not replicating"):
            lifecycle.inject(bed.workdir, "replication-duplicate-key")
    finally:
        replication.restart(bed.replica)
    _wait_running(bed.replica)


@pytest.mark.skipif(bool(missing_binaries()), reason="scripts/setup --test installs prometheus")
def test_prometheus_fires_replication_broken(bed: ReplicationBed, tmp_path: Path) -> None:
    """The shipped rule (only `for: 0s`) on what Debian's exporter really exports, against the broken replica."""
    rules = re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", (RULES_DIR / "hosts.rules.yml").read_text())
    (tmp_path / "hosts.rules.yml").write_text(rules)
    with Prometheus(tmp_path / "prometheus") as server:
        server.start([bed.endpoints.instance], job="mysqld", rule_files=[tmp_path / "hosts.rules.yml"])
        server.wait_for("mysql_slave_status_slave_sql_running == 1")
        assert not server.query('ALERTS{alertname="MySQLReplicationBroken"}')
        lifecycle.inject(bed.workdir, "replication-duplicate-key")
        try:
            firing = server.wait_for('ALERTS{alertname="MySQLReplicationBroken", alertstate="firing"}')
            assert [alert["metric"]["thread"] for alert in firing] == ["sql"]
            assert firing[0]["metric"]["instance"] == bed.endpoints.instance == bed.replica.instance
            assert firing[0]["metric"]["master_host"] == "127.0.0.1"
            alerts = httpx.get(f"{server.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            (alert,) = [a for a in alerts if a["labels"]["alertname"] == "MySQLReplicationBroken"]
            assert alert["annotations"]["runbook_url"].endswith("/runbooks/MySQLReplicationBroken")
            assert alert["labels"]["severity"] == "critical"
        finally:
            _heal_duplicate(bed)
        server.wait_for('ALERTS{alertname="MySQLReplicationBroken"}', lambda result: not result)


def test_stop_and_start_again_keep_the_data(bed: ReplicationBed) -> None:
    """`testbed stop replication` / `start replication`: every process by PID, then the same ports and data."""
    key = _next_id(bed)
    _write_and_see(bed, "before the stop")
    stopped = lifecycle.stop_service(bed.workdir, SERVICE)
    assert all(pid is None for pid in stopped.pids_of(SERVICE).values())
    lifecycle.start_service(bed.workdir, SERVICE)
    _wait_running(bed.replica)
    bed.server.wait_for(f"SELECT note FROM {TABLE_REF} WHERE id = {key}", "before the stop")
    _write_and_see(bed, "after the start")


def test_down_stops_every_process(bed: ReplicationBed) -> None:
    state = Ironic(lifecycle.testbed_dir(bed.workdir)).load_state()
    assert state is not None
    pids = state.pids_of(SERVICE)
    ends = bed.endpoints
    lifecycle.down(bed.workdir)
    assert not any(process.alive(pid) for pid in pids.values())
    for port in (ends.replica_port, ends.primary_port, ends.exporter_port):
        assert not process.listeners(port), port
    saved = yaml.safe_load((bed.workdir / "hammersmith.yaml").read_text().split("\n", 1)[1])
    assert saved["sites"]["testbed"]["replicas"][0]["user"] == HAMMER_USER


# -- cause(), on statuses the testbed can't produce ---------------------------------------------------------


def _status(io: bool = True, sql: bool = True, io_errno: int = 0, sql_errno: int = 0) -> replication.ReplicaStatus:
    return replication.ReplicaStatus(io, sql, io_errno, "", sql_errno, "", None)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (_status(), "ok"),
        (_status(io=False, io_errno=2013), "transient"),  # lost during a read
        (_status(io=False, io_errno=1159), "transient"),  # a read timed out
        (_status(io=False, io_errno=1045), "permanent"),  # wrong password: no restart fixes it
        (_status(io=False, io_errno=1236), "permanent"),  # the primary purged the binlog the replica needs
        (_status(io=False, io_errno=1129), "permanent"),  # blocked on the primary until FLUSH HOSTS
        (_status(io=False, sql=False, io_errno=2003, sql_errno=1062), "permanent"),
        (_status(io=False), "permanent"),  # stopped by an operator
    ],
)
def test_cause(status: replication.ReplicaStatus, expected: str) -> None:
    assert replication.cause(status) == expected
