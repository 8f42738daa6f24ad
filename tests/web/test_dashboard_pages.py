"""The dashboard's pages through the agent's real app and server, a real store, and real sweeps of the testbed.

The sweeps run in observe mode over the demo faults: they record sweeps, findings and ledger rows, and change
nothing in the shared testbed.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from hammersmith import config
from hammersmith.cloud.snapshot import Snapshot
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.react.sweep import Sweeper
from hammersmith.store import Store, open_store
from hammersmith.store.models import Sweep
from hammersmith.testbed.ironic import CLOUD_NAME
from hammersmith.web.app import Server, create_app
from hammersmith.web.dashboard.pages import changes
from hammersmith.web.state import WebState
from tests.conftest import Postgres, Testbed

OPERATOR, VIEWER, PASSWORD = "olive", "victor", "correct horse battery"
REPORT = "/var/lib/hammersmith/smoke-reports/cheap-20261201T0400.ctrf.json"


@dataclass
class Dashboard:
    url: str
    store: Store
    snapshot: Snapshot
    settings: config.Settings
    incident_id: int
    maintained: str


def write_config(directory: Path) -> Path:
    """Two sites on the testbed's cloud: `lab` is swept, `far` never is (its data is missing, so stale)."""
    site = {"cloud": CLOUD_NAME, "policy": {"grace_minutes": 0, "hammers": {"stale-inspection": "off"}}}
    settings = {
        "state_dir": str(directory),
        "http": {"listen": "127.0.0.1:0"},
        "sites": {"lab": site, "far": {"cloud": CLOUD_NAME}},
    }
    path = directory / "hammersmith.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def dashboard(
    testbed: Testbed, demo_faults: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    """Two observe-mode sweeps of the lab, a probe and a smoke result, an incident and a maintenance, two users,
    and the agent's app serving it all on 127.0.0.1 (stopped at the end)."""
    workdir = tmp_path_factory.mktemp("dashboard")
    settings = config.load(write_config(workdir))
    store = open_store(settings.effective_store_url, settings.state_dir)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OS_CLIENT_CONFIG_FILE", str(testbed.workdir / "clouds.yaml"))
        sweeper = Sweeper(settings, "lab", store)
        try:
            sweeper.sweep(apply=False)
            result = sweeper.sweep(apply=False)
        finally:
            sweeper.close()
    assert result.snapshot is not None and result.findings, "the demo faults give the sweep findings"
    now = datetime.now(UTC)
    # yesterday's sweep: the two just run are one point of the 7-day plot (it keeps the last sweep per slice)
    store.record_sweep(
        site="lab",
        started_at=now - timedelta(days=1),
        finished_at=now - timedelta(days=1),
        ok=True,
        summary={"nodes": {"provision_state": {"available": 30}, "maintenance": {"no": 30}}},
    )
    store.record_result(site="lab", source="probe", name="token", status="passed", started_at=now, seconds=0.2)
    store.record_result(
        site="lab",
        source="smoke",
        name="list-nodes",
        status="failed",
        started_at=now - timedelta(hours=1),
        seconds=3.5,
        message="node listing timed out",
        report=REPORT,
    )
    broken = result.findings[0]
    incident_id, _ = store.open_incident(
        site="lab",
        alertname="IronicNodeError",
        fingerprint="f00d",
        starts_at=now,
        status="firing",
        labels={"alertname": "IronicNodeError", "node": broken.node_name or broken.node_uuid},
        annotations={"summary": "a node is in error"},
        node=broken.node_name,
        hammer="error-resetter",
        runbook_url="http://127.0.0.1:9184/runbooks/IronicNodeError",
        detail="received from Alertmanager",
    )
    # a healthy node no one holds (the session's testbed is shared: earlier tests may leave nodes in maintenance)
    idle = next(
        n
        for n in result.snapshot.nodes
        if n["name"] not in demo_faults and not n["maintenance"] and n["provision_state"] == "available"
    )
    store.open_maintenance(
        site="lab",
        node_uuid=idle["uuid"],
        node_name=idle["name"],
        kind="maint",
        state="in-maintenance",
        reason="replace a DIMM",
        by="olive",
        start_at=now - timedelta(hours=2),
        until=now + timedelta(days=2),
        ticket="OPS-42",
    )
    store.add_user(OPERATOR, PASSWORD, "operator")
    store.add_user(VIEWER, PASSWORD, "viewer")
    web = WebState(settings, store, {"lab": result.snapshot})
    app = create_app(Exporter(Telemetry(["lab", "far"]), collectors={}, prime=False), settings=settings, web=web)
    server = Server(app, "127.0.0.1", 0).start()
    try:
        yield Dashboard(server.url, store, result.snapshot, settings, incident_id, idle["name"])
    finally:
        server.stop()
        store.close()


def login(url: str, name: str) -> httpx.Client:
    """A client logged in through the real login form (its double-submit CSRF token included)."""
    client = httpx.Client(base_url=url, timeout=30)
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text
    done = client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": token[1], "next": "/"})
    assert done.status_code == 303, done.text
    return client


@pytest.fixture(scope="module")
def operator(dashboard: Dashboard) -> Iterator[httpx.Client]:
    client = login(dashboard.url, OPERATOR)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def viewer(dashboard: Dashboard) -> Iterator[httpx.Client]:
    client = login(dashboard.url, VIEWER)
    try:
        yield client
    finally:
        client.close()


def section(page: httpx.Response, site: str) -> str:
    """One site's part of the overview."""
    return page.text.split(f'id="site-{site}"')[1].split('<section class="card site"')[0]


def text(page: httpx.Response) -> str:
    """The page's words, without tags: what a person reads."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text)))


@pytest.mark.parametrize("path", ["/", "/nodes/lab/node-001", "/ledger?hammer=clean-failed", "/incidents", "/toil"])
def test_every_page_needs_a_login(dashboard: Dashboard, path: str) -> None:
    page = httpx.get(dashboard.url + path)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login?next=" + path.split("?")[0])


def test_overview_shows_each_site_now_and_over_time(dashboard: Dashboard, viewer: httpx.Client) -> None:
    page = viewer.get("/")
    assert page.status_code == 200
    lab, far = section(page, "lab"), section(page, "far")
    summary = dashboard.snapshot.summary()["nodes"]
    for state, count in summary["provision_state"].items():
        assert re.search(rf"<td>{re.escape(state)}</td><td class=\"num\">{count}</td>", lab), state
    # the plot: one point per sweep so far, each provision state a series
    svg = re.search(r'<svg class="plot nodes-plot"[^>]*data-points="(\d+)" data-states="([^"]*)"', lab)
    assert svg and int(svg[1]) == 2 and set(svg[2].split(",")) == set(summary["provision_state"]) | {"available"}
    assert lab.count('<path class="series"') == len(set(summary["provision_state"]) | {"available"})
    assert 'class="badge ok freshness"' in lab and "snapshot just now" in text(page)
    assert 'class="badge ok breaker"' in lab
    # probes and smoke: now, history, and the CTRF report by its file name only
    assert 'data-check="probe:token"' in lab and 'data-check="smoke:list-nodes"' in lab
    assert "cheap-20261201T0400.ctrf.json" in lab and "/var/lib/hammersmith" not in lab
    assert 'class="failed" title=' in lab and 'class="passed" title=' in lab
    assert f'href="/incidents/{dashboard.incident_id}"' in lab
    # the other site has no data at all: it says so, in red
    assert "badge bad freshness" in far and "no snapshot or sweep yet" in far


def test_operator_forms_only_for_operators(dashboard: Dashboard, operator: httpx.Client, viewer: httpx.Client) -> None:
    assert 'action="/ui/actions/pause"' in operator.get("/").text
    assert "/ui/actions/" not in viewer.get("/").text


def test_node_page_by_name_and_uuid(dashboard: Dashboard, testbed: Testbed, viewer: httpx.Client) -> None:
    row = dashboard.store.ledger_page(site="lab", limit=1)[0]
    node = next(n for n in dashboard.snapshot.nodes if n["uuid"] == row.node_uuid)
    by_name, by_uuid = viewer.get(f"/nodes/lab/{node['name']}"), viewer.get(f"/nodes/lab/{node['uuid']}")
    assert by_name.status_code == by_uuid.status_code == 200
    assert text(by_name) == text(by_uuid)
    words = text(by_name)
    assert f"Node {node['name']}" in words and node["uuid"] in words
    assert f"provision state {node['provision_state']}" in words
    for port in testbed.conn.baremetal.ports(node_uuid=node["uuid"], details=True):
        assert f'<code class="mac">{port.address}</code>' in by_name.text
    # the light tier has Ironic only: the other services were not read, and the page says so
    for section in ("nova", "blazar", "placement"):
        part = by_name.text.split(f'id="{section}"')[1].split("</section>")[0]
        assert 'class="muted not-read"' in part and "not read" in part
    ledger = by_name.text.split('id="ledger"')[1].split("</section>")[0]
    assert f'data-hammer="{row.hammer}"' in ledger and f'href="/runbooks/{row.hammer}"' in ledger
    findings = by_name.text.split('id="findings"')[1].split("</section>")[0]
    assert any(f.summary in html.unescape(findings) for f in dashboard.store.node_findings("lab", node["uuid"]))


def test_node_page_incidents_and_maintenance(dashboard: Dashboard, viewer: httpx.Client) -> None:
    incident = dashboard.store.incident(dashboard.incident_id)
    assert incident is not None and incident.node
    page = viewer.get(f"/nodes/lab/{incident.node}")
    assert f'href="/incidents/{incident.id}"' in page.text.split('id="incidents"')[1]
    kept = viewer.get(f"/nodes/lab/{dashboard.maintained}")
    history = text(kept).split("Maintenance history")[1]
    assert "replace a DIMM" in history and "in-maintenance" in history and "OPS-42" in history


def test_unknown_node_or_site_is_a_404_page(dashboard: Dashboard, viewer: httpx.Client) -> None:
    for path in ("/nodes/lab/no-such-node", "/nodes/nowhere/node-001", "/incidents/999999", "/incidents/x"):
        page = viewer.get(path)
        assert page.status_code == 404 and "Not found" in page.text, path


def test_ledger_filters_by_hammer_with_runbook_links(dashboard: Dashboard, viewer: httpx.Client) -> None:
    hammer = dashboard.store.ledger_page(site="lab", limit=1)[0].hammer
    page = viewer.get("/ledger", params={"hammer": hammer, "site": "lab"})
    hammers = re.findall(r'<tr data-hammer="([^"]+)"', page.text)
    assert hammers and set(hammers) == {hammer}
    assert f'<a href="/runbooks/{hammer}" title="runbook">{hammer}</a>' in page.text
    assert "→" in page.text or "provision_state" in page.text  # before -> after, compactly
    since = viewer.get("/ledger", params={"since": "1h", "outcome": "observed"})
    assert set(re.findall(r'data-outcome="([^"]+)"', since.text)) == {"observed"}
    # a person's act on an account is in the ledger too, but it is not about a node: no node link
    users = viewer.get("/ledger", params={"hammer": "user"})
    assert re.findall(r'<tr data-hammer="([^"]+)"', users.text) == ["user", "user"]
    assert 'class="node-link"' not in users.text and VIEWER in users.text
    bad = viewer.get("/ledger", params={"since": "yesterday-ish"})
    assert bad.status_code == 200 and "is not a time" in text(bad)


def test_ledger_pages_newest_first_by_keyset(dashboard: Dashboard, viewer: httpx.Client) -> None:
    for i in range(130):
        dashboard.store.record_action(
            site="far",
            hammer="error-resetter",
            node_uuid=f"uuid-{i}",
            node_name=f"far-{i:03d}",
            trigger="sweep",
            mode="observe",
            kind="provide",
            params={},
            outcome="observed",
            reason="would provide",
            before={"provision_state": "error"},
        )
    first = viewer.get("/ledger", params={"site": "far"})
    ids = [int(i) for i in re.findall(r'<td class="num">(\d+)</td>', first.text)]
    assert len(ids) == 100 and ids == sorted(ids, reverse=True)
    older = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert older
    second = viewer.get(html.unescape(older[1]))
    rest = [int(i) for i in re.findall(r'<td class="num">(\d+)</td>', second.text)]
    assert len(rest) == 30 and max(rest) < min(ids) and 'rel="next"' not in second.text


def test_incidents_list_and_detail(dashboard: Dashboard, operator: httpx.Client, viewer: httpx.Client) -> None:
    listing = viewer.get("/incidents", params={"site": "lab", "alertname": "IronicNodeError"})
    assert f'href="/incidents/{dashboard.incident_id}"' in listing.text
    none = viewer.get("/incidents", params={"alertname": "NoSuchAlert", "state": "all"})
    assert "No incident matches" in none.text
    detail = viewer.get(f"/incidents/{dashboard.incident_id}")
    words = text(detail)
    assert "received from Alertmanager" in words and 'href="/runbooks/IronicNodeError"' in detail.text
    assert 'href="/runbooks/error-resetter"' in detail.text and "/ui/actions/" not in detail.text
    assert 'action="/ui/actions/incident-resolve"' in operator.get(f"/incidents/{dashboard.incident_id}").text


def test_maintenance_calendar(dashboard: Dashboard, viewer: httpx.Client) -> None:
    page = viewer.get("/maintenance")
    today = datetime.now(UTC).date().isoformat()
    cell = page.text.split(f'data-day="{today}"')[1].split("</td>")[0]
    assert dashboard.maintained in cell and "in-maintenance" in cell
    assert "replace a DIMM" in text(page)
    earlier = viewer.get("/maintenance", params={"start": "2020-01-06"})
    assert earlier.status_code == 200 and dashboard.maintained not in earlier.text


def test_toil_page(viewer: httpx.Client) -> None:
    page = viewer.get("/toil")
    assert page.status_code == 200
    assert '<table class="toil">' in page.text or "not part of this version" in page.text


def test_changes_are_compact() -> None:
    before = {"provision_state": "clean failed", "maintenance": False, "last_error": "x" * 200}
    after = {"provision_state": "available", "maintenance": False, "last_error": None}
    shown = changes(before, after)
    assert [(c.key, c.after) for c in shown] == [("provision_state", "available"), ("last_error", "—")]
    assert len(shown[1].before) == 80
    assert [c.key for c in changes({"provision_state": "error"}, None)] == ["provision_state"]


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The time-bucket queries are written per dialect: each runs on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/state.sqlite"
    else:
        url = request.getfixturevalue("postgres").create_database(f"dashboard_{uuid.uuid4().hex[:12]}")
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def test_history_is_bounded_and_downsampled(any_store: Store) -> None:
    """A year of sweeps every 5 min: the plot reads only the last 7 days, at most about `points` of them."""
    store = any_store
    now = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
    rows = [
        {
            "site": "lab",
            "started_at": now - timedelta(minutes=5 * i),
            "finished_at": now - timedelta(minutes=5 * i),
            "ok": True,
            "summary": {"nodes": {"provision_state": {"available": i % 7}, "maintenance": {"no": 1}}},
        }
        for i in reversed(range(0, 365 * 288, 13))  # every 13th of a year's sweeps, oldest first (as written)
    ]
    with store.session() as session:
        session.execute(Sweep.__table__.insert(), rows)
    points = store.node_counts("lab", now - timedelta(days=7), now=now, points=100)
    assert 50 <= len(points) <= 101
    assert all(p.at >= now - timedelta(days=7) for p in points)
    assert points == sorted(points, key=lambda p: p.at) and points[-1].at == now
    assert store.node_counts("other", now - timedelta(days=7), now=now) == []


def test_results_by_hour_and_latest_per_check(any_store: Store) -> None:
    store = any_store
    now = datetime(2026, 12, 1, 4, 30, tzinfo=UTC)
    for minutes, status in ((5, "passed"), (20, "failed"), (70, "passed"), (75, "passed"), (60 * 30, "failed")):
        at = now - timedelta(minutes=minutes)
        store.record_result(site="lab", source="probe", name="token", status=status, started_at=at, seconds=0.1)
    store.record_result(site="lab", source="smoke", name="boot", status="passed", started_at=now, seconds=9)
    store.record_result(site="far", source="probe", name="token", status="failed", started_at=now, seconds=0.1)
    found = store.result_buckets("lab", now - timedelta(hours=24), 3600)
    counts = {(b.source, b.name, b.bucket, b.status): b.count for b in found}
    hour = int(now.timestamp()) // 3600
    assert counts == {
        ("probe", "token", hour, "passed"): 1,
        ("probe", "token", hour, "failed"): 1,
        ("probe", "token", hour - 1, "passed"): 2,
        ("smoke", "boot", hour, "passed"): 1,
    }
    latest = store.latest_checks("lab")
    assert [(r.source, r.name, r.status, r.started_at) for r in latest] == [
        ("probe", "token", "passed", now - timedelta(minutes=5)),
        ("smoke", "boot", "passed", now),
    ]


def test_every_page_on_postgresql(postgres: Postgres) -> None:
    """Each page's queries on a real PostgreSQL, from a store with one row of everything and no snapshot yet (an
    agent just restarted): the counts come from the last sweep's record."""
    store = open_store(postgres.create_database(f"dashboard_pages_{uuid.uuid4().hex[:12]}"))
    settings = config.parse(f"sites:\n  lab:\n    cloud: {CLOUD_NAME}\n")
    now = datetime.now(UTC)
    nodes = {"total": 2, "provision_state": {"available": 1, "clean failed": 1}, "maintenance": {"no": 2}}
    store.record_sweep(site="lab", started_at=now, finished_at=now, ok=True, summary={"nodes": nodes})
    store.record_finding(site="lab", hammer="clean-failed", node_uuid="u-1", node_name="n-1", summary="s", detail="")
    store.record_action(
        site="lab",
        hammer="clean-failed",
        node_uuid="u-1",
        node_name="n-1",
        trigger="sweep",
        mode="observe",
        kind="provide",
        params={},
        outcome="observed",
        before={"provision_state": "clean failed"},
    )
    store.open_incident(
        site="lab",
        alertname="IronicNodeError",
        fingerprint="pg",
        starts_at=now,
        status="firing",
        labels={},
        annotations={},
        node="n-1",
        hammer=None,
        runbook_url=None,
        detail="received",
    )
    store.open_maintenance(
        site="lab",
        node_uuid="u-1",
        node_name="n-1",
        kind="maint",
        state="waiting",
        reason="r",
        by="b",
        start_at=now,
        until=None,
    )
    store.record_result(site="lab", source="probe", name="token", status="passed", started_at=now, seconds=0.1)
    store.add_user(VIEWER, PASSWORD, "viewer")
    web = WebState(settings, store, {})
    server = Server(create_app(Exporter(Telemetry(["lab"]), collectors={}, prime=False), web=web), "127.0.0.1", 0)
    server.start()
    client = login(server.url, VIEWER)
    try:
        overview = client.get("/")
        assert overview.status_code == 200 and "from the last sweep" in text(overview)
        assert '<td>clean failed</td><td class="num">1</td>' in overview.text
        for path in ("/nodes/lab/n-1", "/nodes/lab/u-1", "/ledger?node=n-1&since=1h", "/ledger?hammer=x&before=9"):
            assert client.get(path).status_code == 200, path
        for path in ("/incidents?state=all&alertname=IronicNodeError", "/incidents/1", "/maintenance", "/toil"):
            assert client.get(path).status_code == 200, path
    finally:
        client.close()
        server.stop()
        store.close()
