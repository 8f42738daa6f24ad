"""Shared fixtures: a clean environment for every test, and real testbeds per session (Ironic alone;
Ironic with Keystone and Neutron)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

from hammersmith.testbed import fleet, lifecycle
from hammersmith.testbed.ironic import Ironic, State, free_port

TESTBED_NODES = 30
KEYSTONE_TESTBED_NODES = 10


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's clouds or config."""
    for name in list(os.environ):
        if name.startswith(("OS_", "HAMMERSMITH_CONFIG")):
            monkeypatch.delenv(name)


def _quiet_step(description: str, total: int | None) -> Callable[[int], None]:
    return lambda done: None


@dataclass
class Testbed:
    __test__ = False
    workdir: Path
    state: State

    @cached_property
    def conn(self) -> fleet.Admin:
        """The testbed's admin access (noauth, or Keystone's admin), not hammersmith's account."""
        return fleet.connect(self.state)

    def node(self, name: str) -> dict:
        return self.conn.baremetal.get_node(name).to_dict(computed=False)

    def node_raw(self, name: str) -> dict:
        """The node as the API returns it (snapshot field names)."""
        return self.conn.baremetal.get(f"/nodes/{name}", microversion="1.78").json()


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """One real Ironic (fake-hardware, SQLite) with TESTBED_NODES available nodes, stopped by PID at the end."""
    workdir = tmp_path_factory.mktemp("testbed")
    state = lifecycle.up(workdir, TESTBED_NODES, free_port(), _quiet_step)
    try:
        yield Testbed(workdir, state)
    finally:
        lifecycle.down(workdir)


@pytest.fixture(scope="session")
def keystone_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Ironic and Neutron behind a real Keystone, KEYSTONE_TESTBED_NODES available nodes; clouds.yaml in
    `.workdir` logs in as the `hammersmith` account. Every process is stopped by PID at the end."""
    workdir = tmp_path_factory.mktemp("keystone-testbed")
    state = lifecycle.up(workdir, KEYSTONE_TESTBED_NODES, free_port(), _quiet_step, {"keystone", "neutron"})
    try:
        yield Testbed(workdir, state)
    finally:
        lifecycle.down(workdir)


def hammersmith(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "hammersmith", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="session")
def demo_faults(testbed: Testbed) -> dict[str, list[str]]:
    """The demo scenario, injected once through the CLI; node -> faults."""
    result = hammersmith("testbed", "inject", "--scenario", "demo", "--json", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@contextmanager
def ironic_answers_500(testbed: Testbed) -> Iterator[None]:
    """Make the real Ironic fail its node listing: one row it cannot decode (restored afterwards)."""
    db = Ironic(lifecycle.testbed_dir(testbed.workdir)).db
    with sqlite3.connect(db) as conn:
        (original,) = conn.execute("SELECT properties FROM nodes WHERE name = 'node-030'").fetchone()
        conn.execute("UPDATE nodes SET properties = '{broken' WHERE name = 'node-030'")
    try:
        yield
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE nodes SET properties = ? WHERE name = 'node-030'", (original,))
