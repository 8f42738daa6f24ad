"""testbed up / status / down against the real Ironic."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import yaml

from hammersmith import config
from hammersmith.testbed import lifecycle, process
from hammersmith.testbed.fleet import RESOURCE_CLASSES
from hammersmith.testbed.ironic import CLOUD_NAME, Ironic, free_port
from tests.conftest import TESTBED_NODES, Testbed, hammersmith


def test_up_enrols_nodes_over_three_resource_classes(testbed: Testbed) -> None:
    # read before any fault test changes the fleet: enrolment facts that faults don't alter
    nodes = list(testbed.conn.baremetal.nodes(details=True))
    assert len(nodes) == TESTBED_NODES
    assert Counter(n.resource_class for n in nodes) == {rc: TESTBED_NODES // 3 for rc in RESOURCE_CLASSES}
    ports = list(testbed.conn.baremetal.ports(details=True))
    assert Counter(p.node_id for p in ports) == {n.id: 1 for n in nodes}
    assert all(n.driver == "fake-hardware" for n in nodes)


def test_up_writes_client_files_that_need_no_flags(testbed: Testbed) -> None:
    clouds = yaml.safe_load((testbed.workdir / "clouds.yaml").read_text())
    assert clouds["clouds"][CLOUD_NAME]["baremetal_endpoint_override"] == testbed.state.url
    settings = config.load(testbed.workdir / "hammersmith.yaml")
    assert settings.sites["testbed"].cloud == CLOUD_NAME
    result = hammersmith("config", "validate", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr


def test_status_json(testbed: Testbed) -> None:
    result = hammersmith("testbed", "status", "--json", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["running"] and status["pid"] == testbed.state.pid and status["nodes"] == TESTBED_NODES


def test_second_up_refuses_while_running(testbed: Testbed) -> None:
    result = hammersmith("testbed", "up", cwd=testbed.workdir)
    assert result.returncode == 1
    assert "already running here" in result.stderr and "Traceback" not in result.stderr


def test_existing_operator_config_is_not_overwritten(tmp_path: Path) -> None:
    from hammersmith.testbed.ironic import State
    from hammersmith.testbed.lifecycle import write_client_files

    (tmp_path / "hammersmith.yaml").write_text("sites:\n  mine:\n    cloud: prod\n")
    (tmp_path / "clouds.yaml").write_text("clouds:\n  prod:\n    auth_type: none\n")
    write_client_files(tmp_path, State(port=6385))
    assert (tmp_path / "hammersmith.yaml").read_text() == "sites:\n  mine:\n    cloud: prod\n"
    assert set(yaml.safe_load((tmp_path / "clouds.yaml").read_text())["clouds"]) == {"prod", CLOUD_NAME}


def test_small_testbed_up_then_down_by_pid(tmp_path: Path) -> None:
    port = str(free_port())  # not Ironic's default 6385: another testbed on this machine may hold it
    result = hammersmith("testbed", "up", "--nodes", "3", "--port", port, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pid = json.loads(result.stdout)["pid"]
    try:
        assert process.alive(pid)
        state = Ironic(lifecycle.testbed_dir(tmp_path)).load_state()
        assert state is not None and state.pid == pid and state.nodes == 3
    finally:
        down = hammersmith("testbed", "down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert not process.alive(pid)
    status = json.loads(hammersmith("testbed", "status", "--json", cwd=tmp_path).stdout)
    assert status["running"] is False


def test_up_with_an_unknown_service_names_the_known_ones(tmp_path: Path) -> None:
    result = hammersmith("testbed", "up", "--with", "keystone,swift", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown service 'swift'" in result.stderr
    assert all(name in result.stderr for name in [*lifecycle.SERVICES, lifecycle.FULL])
    assert "Traceback" not in result.stderr and not (tmp_path / ".hammersmith").exists()
