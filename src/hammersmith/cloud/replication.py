"""A MariaDB/MySQL replica's replication threads: read their status, tell a lost link from a broken one, restart.

A replica whose IO thread lost its primary (a network blip, a primary restarted) is fixed by starting replication
again; one whose SQL thread failed on a row (a duplicate key written on the replica) is not, and restarting it
would only hide the divergence. hammersmith connects with its least-privilege account (SLAVE MONITOR and
REPLICATION SLAVE ADMIN: it reads no data), whose password stays in `password_file` and out of every log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pymysql
import pymysql.cursors

from hammersmith.config import Replica
from hammersmith.errors import CloudError

Cause = Literal["ok", "transient", "permanent"]

#: what a lost connection between replica and primary leaves in Last_IO_Errno, and nothing else. Client errors
#: (the IO thread is a client of the primary): 2002 CR_CONNECTION_ERROR, 2003 CR_CONN_HOST_ERROR (refused, no
#: route: a primary down or restarting), 2006 CR_SERVER_GONE_ERROR, 2013 CR_SERVER_LOST, 2055 CR_SERVER_LOST_EXTENDED
#: (MySQL); server errors of the network layer: 1158-1161 ER_NET_READ_ERROR, ER_NET_READ_INTERRUPTED,
#: ER_NET_ERROR_ON_WRITE, ER_NET_WRITE_INTERRUPTED, and 1189/1190 ER_MASTER_NET_READ/WRITE. Left out on purpose,
#: because starting replication again cannot fix them: 1045 (wrong credentials), 1129 (host blocked on the primary
#: until FLUSH HOSTS), 1236 (the primary purged the binlog the replica needs), 2026 (TLS misconfigured).
CONNECTION_LOST = frozenset({2002, 2003, 2006, 2013, 2055, 1158, 1159, 1160, 1161, 1189, 1190})
#: MySQL and MariaDB answer a statement they don't know with a parse error
_PARSE_ERROR = 1064


@dataclass(frozen=True)
class ReplicaStatus:
    """The fields of SHOW REPLICA STATUS that decide what is wrong."""

    io_running: bool
    sql_running: bool
    last_io_errno: int
    last_io_error: str
    last_sql_errno: int
    last_sql_error: str
    #: None while a thread is stopped (the server reports NULL)
    seconds_behind_master: int | None


@contextmanager
def _connect(replica: Replica, timeout: float) -> Iterator[pymysql.cursors.DictCursor]:
    """A cursor as the replica's account; errors name the replica, never the password."""
    try:
        password = replica.password_file.read_text().strip()
    except OSError as exc:
        raise CloudError(f"replica {replica.name}: cannot read its password file: {exc.strerror}") from None
    try:
        conn = pymysql.connect(
            host=replica.host,
            port=replica.port,
            user=replica.user,
            password=password,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
        )
    except pymysql.MySQLError as exc:
        raise CloudError(f"replica {replica.name} ({replica.host}:{replica.port}): {_message(exc)}") from None
    try:
        with conn.cursor() as cursor:
            yield cursor
    except pymysql.MySQLError as exc:
        raise CloudError(f"replica {replica.name} ({replica.host}:{replica.port}): {_message(exc)}") from None
    finally:
        conn.close()


def _message(exc: pymysql.MySQLError) -> str:
    return str(exc.args[1]) if len(exc.args) > 1 else str(exc)


def _execute(cursor: pymysql.cursors.DictCursor, current: str, legacy: str) -> None:
    """The REPLICA spelling (MariaDB >= 10.5.1, MySQL >= 8.0.22; MySQL 8.4 knows no other), else the SLAVE one."""
    try:
        cursor.execute(current)
    except pymysql.err.ProgrammingError as exc:
        if exc.args[0] != _PARSE_ERROR:
            raise
        cursor.execute(legacy)


def _field(row: dict[str, Any], *names: str) -> Any:
    """MySQL's SHOW REPLICA STATUS renamed the columns (Replica_IO_Running ...); MariaDB's kept Slave_*."""
    return next((row[name] for name in names if name in row), None)


def status(replica: Replica, timeout: float = 5) -> ReplicaStatus:
    """Read the replica's replication status; CloudError if it can't be reached or replicates from nothing."""
    with _connect(replica, timeout) as cursor:
        _execute(cursor, "SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
        row = cursor.fetchone()
    if row is None:
        raise CloudError(f"replica {replica.name} ({replica.host}:{replica.port}) is not replicating from any primary")
    behind = _field(row, "Seconds_Behind_Master", "Seconds_Behind_Source")
    return ReplicaStatus(
        io_running=_field(row, "Slave_IO_Running", "Replica_IO_Running") == "Yes",
        sql_running=_field(row, "Slave_SQL_Running", "Replica_SQL_Running") == "Yes",
        last_io_errno=int(row["Last_IO_Errno"] or 0),
        last_io_error=str(row["Last_IO_Error"] or ""),
        last_sql_errno=int(row["Last_SQL_Errno"] or 0),
        last_sql_error=str(row["Last_SQL_Error"] or ""),
        seconds_behind_master=None if behind is None else int(behind),
    )


def cause(status: ReplicaStatus) -> Cause:
    """ok: both threads run. transient: only the IO thread stopped, for a lost connection (CONNECTION_LOST), which
    starting replication again fixes once the primary answers. permanent: anything else, an SQL thread error (1062,
    a duplicate key: the replica diverged), an IO error no restart fixes, or a thread stopped without an error (an
    operator's STOP SLAVE, not hammersmith's to undo)."""
    if status.io_running and status.sql_running:
        return "ok"
    if status.sql_running and status.last_io_errno in CONNECTION_LOST:
        return "transient"
    return "permanent"


def restart(replica: Replica, timeout: float = 5) -> None:
    """START REPLICA: starts whichever thread is stopped (a running one is left as it is)."""
    with _connect(replica, timeout) as cursor:
        _execute(cursor, "START REPLICA", "START SLAVE")
