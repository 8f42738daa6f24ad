"""The full tier through the real CLI: MariaDB, RabbitMQ, Keystone, Placement and Glance beside Ironic."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from hammersmith.errors import TestbedError
from hammersmith.testbed import lifecycle, process
from hammersmith.testbed.ironic import CLOUD_NAME, Ironic, State, free_port
from hammersmith.testbed.mariadb import MariaDB
from hammersmith.testbed.rabbitmq import SBIN, greets
from tests.conftest import Testbed, hammersmith
from tests.testbed.test_infra import listening_ports, loopback_only, rss_mb, tree

NODES = 3
WITH = "mariadb,rabbitmq,placement,glance"  # keystone comes with placement and glance
TIER = {"mariadb", "rabbitmq", "keystone", "placement", "glance"}
INSTALLED = bool(shutil.which("mariadbd", path="/usr/sbin:/usr/bin")) and (SBIN / "rabbitmq-server").exists()


def real(test: Callable[..., None]) -> Callable[..., None]:
    """A test on the running tier: real services, and the Debian packages `scripts/setup --test` installs."""
    skip = pytest.mark.skipif(not INSTALLED, reason="not installed: mariadb-server, rabbitmq-server")
    return pytest.mark.integration(skip(test))


def test_full_means_every_service_and_each_brings_what_it_needs() -> None:
    assert lifecycle.known_services(["full"]) == set(lifecycle.SERVICES)
    assert "nova" in lifecycle.SERVICES
    assert lifecycle.known_services(["nova"]) == {"nova", "neutron", *TIER}  # its computes need the nodes: after Ironic
    assert lifecycle.SERVICES["nova"].order > lifecycle.IRONIC_ORDER
    assert lifecycle.known_services(WITH.split(",")) == TIER
    assert lifecycle.known_services(["neutron"]) == {"neutron"}  # with or without Keystone, as before
    with pytest.raises(TestbedError, match="unknown service 'swift'") as refused:
        lifecycle.known_services(["glance", "swift"])
    assert refused.value.hint and all(name in refused.value.hint for name in lifecycle.SERVICES)


def test_a_state_file_from_before_the_registry_still_loads(tmp_path: Path) -> None:
    ironic = Ironic(tmp_path)
    old = {
        "port": 6385,
        "pid": 10,
        "keystone_port": 5000,
        "keystone_pid": 11,
        "neutron_port": None,
        "neutron_pid": None,
    }
    ironic.state_file.write_text(json.dumps(old | {"passwords": {"admin": "x"}}))
    state = ironic.load_state()
    assert state is not None and state.services == {"keystone": {"port": 5000, "pid": 11}}
    assert state.auth_url == "http://127.0.0.1:5000/v3" and state.neutron_url is None and state.passwords
    assert set(lifecycle.own_processes(ironic, State(port=1, services=state.services))) == {"Ironic", "keystone"}


def test_a_service_of_several_processes_is_recorded_and_stopped_process_by_process(tmp_path: Path) -> None:
    ironic = Ironic(tmp_path)
    state = State(port=1, services={"nova": {"port": 2, "pid": None}})
    state.set_pid("nova", {"api": 10, "conductor": 11, "compute-1": 12})
    ironic.save_state(state)
    loaded = ironic.load_state()
    assert (
        loaded is not None
        and loaded.pid_of("nova") == 10
        and list(loaded.pids_of("nova"))
        == [
            "api",
            "conductor",
            "compute-1",
        ]
    )
    assert set(lifecycle.own_processes(ironic, loaded)) == {"Ironic", "nova api", "nova conductor", "nova compute-1"}
    loaded.set_pid("nova", None)
    assert loaded.services["nova"] == {"port": 2, "pid": None} and loaded.pids_of("nova") == {"nova": None}


def processes(workdir: Path) -> set[int]:
    """Every process of the testbed: each recorded PID's descendants, and RabbitMQ's epmd."""
    state = Ironic(lifecycle.testbed_dir(workdir)).load_state()
    assert state is not None
    epmd = lifecycle.service_dir(workdir, "rabbitmq") / "epmd.pid"
    leaders = [state.pid, *(pid for name in state.services for pid in state.pids_of(name).values())]
    leaders += [int(epmd.read_text())] if epmd.exists() else []
    return {pid for leader in leaders if leader for pid in tree(leader)}


def up(workdir: Path) -> float:
    started = time.monotonic()
    port = str(free_port())  # not Ironic's default 6385: another testbed on this machine may hold it
    result = hammersmith(
        "testbed", "up", "--nodes", str(NODES), "--port", port, "--with", WITH, "--json", cwd=workdir, timeout=900
    )
    assert result.returncode == 0, result.stderr
    return time.monotonic() - started


def down_leaves_nothing(workdir: Path) -> float:
    """`testbed down`; every process it had and every port they listened on are gone. Returns its seconds."""
    pids = processes(workdir)
    ports = listening_ports(pids)
    assert pids and len(ports) >= len(TIER) + 1  # each service, Ironic, and RabbitMQ's epmd and distribution
    started = time.monotonic()
    result = hammersmith("testbed", "down", cwd=workdir)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert [pid for pid in pids if process.alive(pid)] == []
    assert {port: holders for port in ports if (holders := process.listeners(port))} == {}
    return seconds


@pytest.fixture(scope="module")
def first_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, float]]:
    """A first `up` in a new directory: cold when the services' venvs are not cached yet."""
    workdir = tmp_path_factory.mktemp("full-tier")
    try:
        yield workdir, up(workdir)
    finally:
        lifecycle.down(workdir)


@pytest.fixture
def tier(first_up: tuple[Path, float]) -> Testbed:
    """The running tier, as on disk now (a test before may have restarted a service)."""
    return Testbed(first_up[0], lifecycle.running(first_up[0])[1])


def account(bed: Testbed) -> Connection:
    """hammersmith's own account from clouds.yaml: every endpoint from Keystone's catalog."""
    config = OpenStackConfig(config_files=[str(bed.workdir / "clouds.yaml")], load_envvars=False)
    return Connection(config=config.get_one(cloud=CLOUD_NAME))


@real
def test_every_service_answers_through_the_catalog(tier: Testbed) -> None:
    conn = account(tier)
    assert {conn.endpoint_for(t) for t in ("placement", "image", "baremetal")} == {
        lifecycle.service_url(tier.state, "placement"),
        lifecycle.service_url(tier.state, "glance"),
        tier.state.url,
    }
    assert list(conn.placement.resource_providers()) == []
    assert list(conn.image.images()) == []
    assert len(list(conn.baremetal.nodes())) == NODES
    # MariaDB holds Placement's and Glance's databases (no SQLite file), RabbitMQ speaks AMQP
    mariadb = MariaDB(lifecycle.service_dir(tier.workdir, "mariadb"))
    assert {"placement", "glance"} <= set(mariadb.sql("SHOW DATABASES").split())
    assert not [
        db for name in ("placement", "glance") for db in lifecycle.service_dir(tier.workdir, name).glob("*.sqlite")
    ]
    assert greets(tier.state.port_of("rabbitmq") or 0)
    # every server on loopback only
    assert all(loopback_only(port) for port in listening_ports(processes(tier.workdir)))


@real
def test_status_shows_every_service(tier: Testbed) -> None:
    result = hammersmith("testbed", "status", "--json", cwd=tier.workdir)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    for name in lifecycle.SERVICES:
        expected = {"url": lifecycle.service_url(tier.state, name), "pid": tier.state.pid_of(name), "running": True}
        assert status[name] == (expected if name in TIER else None), name
    assert status["glance"]["url"].startswith("http://127.0.0.1:") and status["mariadb"]["url"].startswith("mysql:")
    assert status["nodes"] == NODES


@real
def test_glance_outage_then_back_with_its_image(tier: Testbed) -> None:
    image = account(tier).image.create_image(name="kept", disk_format="raw", container_format="bare")
    stopped = hammersmith("testbed", "stop", "glance", cwd=tier.workdir)
    assert stopped.returncode == 0, stopped.stderr
    assert not process.alive(tier.state.pid_of("glance"))
    assert lifecycle.status(tier.workdir)["glance"]["running"] is False
    started = hammersmith("testbed", "start", "glance", "--json", cwd=tier.workdir)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["url"] == lifecycle.service_url(tier.state, "glance")
    assert [i.id for i in account(tier).image.images()] == [image.id]


@real
def test_mariadb_and_rabbitmq_outages_then_back(tier: Testbed) -> None:
    """Their own stop(pid): mariadbd works in its datadir, RabbitMQ's epmd goes with it."""
    conn = account(tier)
    provider = conn.placement.create_resource_provider(name="kept")
    epmd = lifecycle.service_dir(tier.workdir, "rabbitmq") / "epmd.pid"
    for name in ("mariadb", "rabbitmq"):
        pid = tier.state.pid_of(name)
        assert pid and process.alive(pid)
        gone = tree(pid) | ({int(epmd.read_text())} if name == "rabbitmq" else set())
        # through the CLI: what the tests' own process starts, only it can reap (and `testbed down` here would
        # wait for its zombies)
        assert hammersmith("testbed", "stop", name, cwd=tier.workdir).returncode == 0
        assert [p for p in gone if process.alive(p)] == []
        assert hammersmith("testbed", "start", name, cwd=tier.workdir).returncode == 0
        state = lifecycle.running(tier.workdir)[1]
        assert process.alive(state.pid_of(name)) and state.port_of(name) == tier.state.port_of(name)
    assert process.alive(int(epmd.read_text())) and greets(state.port_of("rabbitmq") or 0)
    assert [p.id for p in conn.placement.resource_providers()] == [provider.id]  # Placement reconnected


@real
@pytest.mark.timeout(1200)
def test_down_leaves_no_process_and_no_port_and_a_warm_up_is_faster(first_up: tuple[Path, float]) -> None:
    """The closing figures: the first and a warm `up`, the tier's resident memory, `down`."""
    workdir, first = first_up
    rss = rss_mb(processes(workdir))
    first_down = down_leaves_nothing(workdir)
    warm = up(workdir)
    warm_rss = rss_mb(processes(workdir))
    warm_down = down_leaves_nothing(workdir)
    print(
        f"\nfull tier ({WITH} + keystone, {NODES} nodes): first up {first:.1f} s, warm up {warm:.1f} s; "
        f"resident {rss:.0f} MB after the tests, {warm_rss:.0f} MB fresh; down {first_down:.1f} s, {warm_down:.1f} s"
    )
    assert warm < 90
