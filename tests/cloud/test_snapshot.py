"""The snapshot against the real Ironic: bulk pages only, counted requests, never 'empty' on failure."""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hammersmith.cloud import snapshot
from hammersmith.cloud.connection import SiteConnection
from hammersmith.config import Site
from hammersmith.errors import CloudError
from hammersmith.store import open_store
from hammersmith.testbed.ironic import CLOUD_NAME
from tests.conftest import TESTBED_NODES, Testbed, hammersmith, ironic_answers_500


@pytest.fixture
def clouds(testbed: Testbed, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = testbed.workdir / "clouds.yaml"
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


def site_config(tmp_path: Path, testbed: Testbed, **site: object) -> Path:
    """A config in its own directory (own store) pointing at the testbed cloud."""
    lines = "".join(f"    {key}: {value}\n" for key, value in site.items())
    (tmp_path / "hammersmith.yaml").write_text(f"sites:\n  lab:\n    cloud: {CLOUD_NAME}\n{lines}")
    return tmp_path / "hammersmith.yaml"


def test_requests_grow_only_by_pages(testbed: Testbed, clouds: Path) -> None:
    conn = SiteConnection("lab", Site(cloud=CLOUD_NAME, page_size=7))
    snap = snapshot.take(conn)
    assert snap.complete() and snap.incomplete == []
    assert len(snap.data["nodes"] or []) == TESTBED_NODES and len(snap.data["ports"] or []) == TESTBED_NODES
    # 30 items in pages of 7: 7+7+7+7+2 -> 5 requests per list; allocations: 1; nothing per object
    assert snap.requests == {"ironic": 5 + 5 + 1}
    full = snapshot.take(SiteConnection("lab", Site(cloud=CLOUD_NAME)))
    assert full.requests == {"ironic": 3}
    assert {n["uuid"] for n in full.nodes} == {n["uuid"] for n in snap.nodes}


def test_services_outside_the_catalog_are_absent_not_incomplete(testbed: Testbed, clouds: Path) -> None:
    snap = snapshot.take(SiteConnection("lab", Site(cloud=CLOUD_NAME)))
    # noauth: no identity service, so no projects listing (and no project names), not an incomplete read
    assert {s: r.status for s, r in snap.services.items()} == {
        "keystone": "absent",
        "ironic": "ok",
        "nova": "absent",
        "neutron": "absent",
        "placement": "absent",
        "blazar": "absent",
    }
    assert "servers" not in snap.data and "projects" not in snap.data and snap.complete("ironic")
    assert snap.project_names == {} and not snap.incomplete


def test_snapshot_uses_an_explicit_microversion(testbed: Testbed, clouds: Path) -> None:
    snap = snapshot.take(SiteConnection("lab", Site(cloud=CLOUD_NAME)))
    node = snap.nodes[0]
    assert "retired" in node and "lessee" in node  # 1.78 fields
    assert "shard" not in node  # 1.82 field: the server's maximum (1.9x) is not what we asked for


def test_cli_snapshot_json_and_store_record(testbed: Testbed, tmp_path: Path) -> None:
    config = site_config(tmp_path, testbed)
    result = hammersmith("--config", str(config), "snapshot", "--json", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"] and summary["nodes"]["total"] == TESTBED_NODES
    assert summary["requests"] == {"ironic": 3}
    assert sum(summary["nodes"]["resource_class"].values()) == TESTBED_NODES
    store = open_store(f"sqlite:///{tmp_path / '.hammersmith' / 'hammersmith.sqlite'}")
    try:
        (row,) = store.recent_snapshots("lab")
    finally:
        store.close()
    assert row.complete and row.requests == {"ironic": 3} and row.counts["nodes"] == TESTBED_NODES


def test_cli_snapshot_human_output(testbed: Testbed) -> None:
    result = hammersmith("snapshot", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr
    assert "Snapshot of site 'testbed'" in result.stdout and "nodes by provision state" in result.stdout


def test_ironic_500_marks_the_snapshot_incomplete(testbed: Testbed, tmp_path: Path, clouds: Path) -> None:
    config = site_config(tmp_path, testbed)
    with ironic_answers_500(testbed):
        snap = snapshot.take(SiteConnection("lab", Site(cloud=CLOUD_NAME)))
        result = hammersmith("--config", str(config), "snapshot", cwd=testbed.workdir)
    assert snap.incomplete == ["ironic"] and not snap.complete("ironic")
    assert snap.data["nodes"] is None and snap.data["ports"] is None  # unknown, never "empty"
    assert "HTTP 500 from /nodes/detail" in (snap.services["ironic"].error or "")
    assert result.returncode == 3
    assert "snapshot of site 'lab' is incomplete: ironic: nodes: HTTP 500" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    store = open_store(f"sqlite:///{tmp_path / '.hammersmith' / 'hammersmith.sqlite'}")
    try:
        (row,) = store.recent_snapshots("lab")
    finally:
        store.close()
    assert not row.complete and row.incomplete_services == ["ironic"]


def test_ironic_timeout_marks_the_snapshot_incomplete(testbed: Testbed, clouds: Path) -> None:
    """A hung Ironic (process group stopped) is a timeout, not an empty fleet."""
    assert testbed.state.pid
    os.killpg(testbed.state.pid, signal.SIGSTOP)
    try:
        snap = snapshot.take(SiteConnection("lab", Site(cloud=CLOUD_NAME, timeout_seconds=1)))
    finally:
        os.killpg(testbed.state.pid, signal.SIGCONT)
    assert snap.incomplete == ["ironic"]
    assert "no answer within the timeout" in (snap.services["ironic"].error or "")
    assert snap.data["nodes"] is None


def test_unreachable_endpoint(tmp_path: Path) -> None:
    (tmp_path / "clouds.yaml").write_text(
        "clouds:\n  gone:\n    auth_type: none\n    baremetal_endpoint_override: http://127.0.0.1:9\n"
    )
    (tmp_path / "hammersmith.yaml").write_text("sites:\n  gone:\n    cloud: gone\n")
    result = hammersmith("snapshot", cwd=tmp_path)
    assert result.returncode == 3
    assert "cannot connect (connection refused)" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr


def test_missing_cloud_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CloudError, match="cloud 'nowhere' not usable"):
        SiteConnection("x", Site(cloud="nowhere"))
    (tmp_path / "hammersmith.yaml").write_text("sites:\n  x:\n    cloud: nowhere\n")
    result = hammersmith("snapshot", cwd=tmp_path)
    assert result.returncode == 1 and "cloud 'nowhere' not usable" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Traceback" in hammersmith("--debug", "snapshot", cwd=tmp_path).stderr


def test_unreachable_store_fails_before_reading_the_cloud(testbed: Testbed, tmp_path: Path) -> None:
    config = tmp_path / "hammersmith.yaml"
    config.write_text(
        f"store_url: postgresql+psycopg://hs:s3cret-pw@127.0.0.1:9/hs\nsites:\n  lab:\n    cloud: {CLOUD_NAME}\n"
    )
    result = hammersmith("--config", str(config), "snapshot", cwd=testbed.workdir)
    assert result.returncode == 1
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr and "Snapshot of site" not in result.stdout


def test_project_names_come_from_keystones_listing() -> None:
    """Pure logic: Keystone's GET /v3/projects items, as the `projects` listing keeps them."""
    projects = [
        {"id": "8a3c", "name": "CHI-231", "domain_id": "default", "enabled": True, "links": {"self": "..."}},
        {"id": "5f1e", "name": "", "domain_id": "default", "enabled": False},  # no name: not a name
    ]
    now = datetime.now(UTC)
    snap = snapshot.Snapshot("lab", now, now, {"projects": projects}, {"keystone": snapshot.ServiceRead()})
    assert snap.project_names == {"8a3c": "CHI-231"}
    unread = snapshot.Snapshot("lab", now, now, {"projects": None}, {"keystone": snapshot.ServiceRead("incomplete")})
    assert unread.project_names == {}
