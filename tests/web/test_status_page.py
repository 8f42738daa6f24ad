"""The public status page: the health rules (pure), and /status, /status.json and /status.atom served by the
agent's real app (a real Server, a real store) with posts, maintenances, schedules and results in it; nothing
private in any of the three; fast enough with 90 days of hourly results and a year of posts."""

from __future__ import annotations

import json
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event, insert

from hammersmith import config
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.store import Store, open_store
from hammersmith.store.models import DetectResult
from hammersmith.web.app import Server, create_app
from hammersmith.web.state import WebState
from hammersmith.web.status import health
from hammersmith.web.status.data import HISTORY_DAYS, Builder
from hammersmith.web.status.health import Check, day_state, from_failures, judge, with_posts
from tests.conftest import Postgres

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ATOM = "{http://www.w3.org/2005/Atom}"

# -- the rules, pure ---------------------------------------------------------------------------------------------


def check(name: str, status: str, *, source: str = "probe", age: timedelta = MINUTE, heartbeat: bool = True) -> Check:
    return Check(source, name, status, NOW - age, timedelta(minutes=3), heartbeat)


def test_the_rules_one_by_one() -> None:
    passing = [check("token", "passed"), check("reads", "passed"), check("catalog", "passed")]
    assert judge(passing, [], False, NOW) == "up"
    assert judge([*passing[1:], check("token", "failed")], [], False, NOW) == "down"  # logging in failed
    assert judge([*passing, check("list-nodes", "failed", source="smoke")], [], False, NOW) == "down"  # listing
    assert judge([*passing, check("tls", "failed")], [], False, NOW) == "degraded"
    assert judge([*passing, check("deploy-node", "failed", source="smoke", heartbeat=False)], [], False, NOW) == (
        "degraded"
    )
    # a failure older than its freshness limit is not judged; with no fresh heartbeat, the state is unknown
    assert judge([*passing, check("tls", "failed", age=timedelta(minutes=4))], [], False, NOW) == "up"
    stale = [check("reads", "failed", age=timedelta(hours=1))]
    assert judge(stale, [], False, NOW) == "unknown"
    assert judge([check("deploy-node", "passed", source="smoke", heartbeat=False)], [], False, NOW) == "unknown"
    assert judge(stale, ["down"], False, NOW) == "down"  # the operators said so
    # posts only make it worse; maintenance counts as degraded, info as nothing
    assert judge(passing, ["info"], False, NOW) == "up"
    assert judge(passing, ["maintenance"], False, NOW) == "degraded"
    assert judge([*passing, check("token", "failed")], ["degraded", "info"], False, NOW) == "down"
    # offline as scheduled wins over everything: a part-time site asleep is not down
    assert judge([check("token", "failed")], ["down"], True, NOW) == "offline"


def test_a_day_of_the_history() -> None:
    assert day_state([], True, [], False) == "up"
    assert day_state([("probe", "tls")], True, [], False) == "degraded"
    assert day_state([("probe", "tls"), ("probe", "reads")], True, [], False) == "down"
    assert day_state([], False, [], False) == "none"
    assert day_state([], False, [], True) == "offline"
    assert day_state([], False, ["maintenance"], True) == "degraded"
    assert day_state([], True, ["down"], False) == "down"


CHECKS = st.lists(
    st.builds(
        Check,
        source=st.sampled_from(["probe", "smoke"]),
        name=st.sampled_from(["token", "reads", "catalog", "tls", "token-issue", "list-nodes", "deploy-node"]),
        status=st.sampled_from(["passed", "failed", "skipped"]),
        at=st.integers(0, 600).map(lambda s: NOW - timedelta(seconds=s)),
        max_age=st.sampled_from([timedelta(minutes=3), timedelta(hours=1)]),
        heartbeat=st.booleans(),
    ),
    max_size=12,
)
IMPACTS = st.lists(st.sampled_from(["degraded", "down", "maintenance", "info"]), max_size=4)
RANK = {"unknown": -1, **health.SEVERITY}


@given(CHECKS, IMPACTS, IMPACTS)
def test_a_post_can_only_make_it_worse(checks: list[Check], before: list[str], more: list[str]) -> None:
    plain, posted = judge(checks, before, False, NOW), judge(checks, before + more, False, NOW)
    assert RANK[posted] >= RANK[plain]
    assert judge(checks, before + more, True, NOW) == "offline"


@given(CHECKS, IMPACTS)
def test_down_exactly_when_a_fresh_essential_check_failed_or_a_post_says_so(
    checks: list[Check], impacts: list[str]
) -> None:
    fresh = [c for c in checks if c.fresh(NOW)]
    state = judge(checks, impacts, False, NOW)
    essential_failed = any(c.essential and c.status == "failed" for c in fresh)
    assert (state == "down") == ("down" in impacts or (essential_failed and any(c.heartbeat for c in fresh)))
    assert state == "unknown" or any(c.heartbeat for c in fresh) or set(impacts) - {"info"}


@given(st.sets(st.tuples(st.sampled_from(["probe", "smoke"]), st.sampled_from(["token", "reads", "tls", "x"]))))
def test_failures_rank_like_the_live_rule(failed: set[tuple[str, str]]) -> None:
    assert from_failures(failed) == ("down" if failed & health.ESSENTIAL else "degraded" if failed else "up")
    assert with_posts(from_failures(failed), []) == from_failures(failed)


# -- the page over HTTP, on a real store -------------------------------------------------------------------------

NODES = [
    ("gpu-secret-001", str(uuid.uuid4())),
    ("gpu-secret-002", str(uuid.uuid4())),
    ("cpu-hidden-7", str(uuid.uuid4())),
]
PRIVATE_IP = "10.20.30.40"
PROJECT = "project-zeta-confidential"
MESSAGE = f"HTTP 500 from GET http://{PRIVATE_IP}:6385/v1/nodes/gpu-secret-001 of {PROJECT}"
OPERATORS = ("alice-operator", "bob-operator")
REASON = "replace DIMM in rack R7 for ticket OPS-4471"
SCHEDULE_NAME = "hush-hush-schedule"
POST_TITLE, POST_BODY = "Deploys are failing", "Ironic answers errors to deploys.\nWe are working on it."
PRIVATE = [*[n for node in NODES for n in node], PRIVATE_IP, PROJECT, MESSAGE, *OPERATORS, REASON, SCHEDULE_NAME]
PROBES = ("token", "catalog", "reads", "tls")


@dataclass
class Agent:
    url: str
    store: Store
    settings: config.Settings


def write_config(directory: Path) -> Path:
    everywhere = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    sites = {
        "lab": {
            "cloud": "nowhere",
            "schedules": [
                {
                    "name": SCHEDULE_NAME,
                    "nodes": ["gpu-secret-001"],
                    "offline": [{"days": everywhere, "start": "03:00", "end": "04:00"}],
                }
            ],
        },
        # offline around the clock: two spans that meet
        "night": {
            "cloud": "nowhere",
            "schedules": [
                {
                    "name": "always",
                    "offline": [
                        {"days": everywhere, "start": "00:00", "end": "12:00"},
                        {"days": everywhere, "start": "12:00", "end": "00:00"},
                    ],
                }
            ],
        },
        "quiet": {"cloud": "nowhere"},
    }
    path = directory / "hammersmith.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(directory / "state"), "sites": sites}))
    return path


def record(store: Store, site: str, name: str, status: str, at: datetime, source: str = "probe") -> None:
    message = MESSAGE if status == "failed" else None
    store.record_result(site=site, source=source, name=name, status=status, started_at=at, seconds=0.2, message=message)


def fill(store: Store, now: datetime) -> None:
    """lab: hourly passing probes for 5 days, tls failing once 3 days ago, reads failing now (down);
    night: failures while offline as scheduled; quiet: nothing. Maintenances and posts with private details."""
    for hours in range(5 * 24, 0, -1):
        at = now - timedelta(hours=hours)
        for name in PROBES:
            record(store, "lab", name, "failed" if name == "tls" and hours == 72 else "passed", at)
        record(store, "night", "reads", "failed", at)
    for name in PROBES:
        record(store, "lab", name, "failed" if name == "reads" else "passed", now - MINUTE)
    record(store, "lab", "list-nodes", "passed", now - MINUTE, source="smoke")
    for (node, node_uuid), state, until, kind in (
        (NODES[0], "in-maintenance", now + timedelta(days=1), "maint"),
        (NODES[1], "in-maintenance", now + timedelta(days=2), "adopted"),
        (NODES[2], "requested", now + timedelta(days=4), "maint"),
    ):
        store.open_maintenance(
            site="lab",
            node_uuid=node_uuid,
            node_name=node,
            kind=kind,
            state=state,
            reason=REASON,
            by=OPERATORS[1],
            start_at=now + timedelta(days=3) if state == "requested" else now - timedelta(hours=1),
            until=until,
            ticket="OPS-4471",
        )
    old = store.publish_status(
        "lab", "Network upgrade", "Done in an hour.", "maintenance", OPERATORS[0], now - timedelta(days=2)
    )
    store.resolve_status(old.id, OPERATORS[1], now - timedelta(days=2) + timedelta(hours=1))
    store.publish_status("lab", POST_TITLE, POST_BODY, "degraded", OPERATORS[0], now - 30 * MINUTE)


def serve(directory: Path, store_url: str | None = None) -> tuple[Server, Agent]:
    settings = config.load(write_config(directory))
    if store_url is not None:
        settings = settings.model_copy(update={"store_url": store_url})
    store = open_store(settings.effective_store_url, settings.state_dir)
    app = create_app(
        Exporter(Telemetry(list(settings.sites)), collectors={}, prime=False),
        settings=settings,
        web=WebState(settings, store),
    )
    server = Server(app, "127.0.0.1", 0).start()
    return server, Agent(server.url, store, settings)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    server, running = serve(tmp_path)
    try:
        fill(running.store, datetime.now(UTC))
        yield running
    finally:
        server.stop()
        running.store.close()


def assert_private_absent(*answers: str) -> None:
    for text in answers:
        for secret in PRIVATE:
            assert secret not in text, f"{secret!r} is on the public page"


def sections(html: str) -> dict[str, str]:
    parts = html.split('<section class="site" id="site-')[1:]
    return {part.split('"', 1)[0]: part.split("</section>", 1)[0] for part in parts}


def test_the_page_json_and_feed_show_states_posts_and_maintenance_and_nothing_private(agent: Agent) -> None:
    html = httpx.get(f"{agent.url}/status")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "public" in html.headers["cache-control"] and "<script" not in html.text
    site = sections(html.text)
    assert set(site) == {"lab", "night", "quiet"}
    assert 'data-state="down"' in site["lab"] and ">Down<" in site["lab"]
    assert 'data-state="offline"' in site["night"] and "Offline as scheduled" in site["night"]
    assert 'data-state="unknown"' in site["quiet"]
    assert POST_TITLE in site["lab"] and "Ironic answers errors to deploys." in site["lab"]
    assert "2 nodes in maintenance until" in site["lab"] and "1 node in planned maintenance from" in site["lab"]
    assert "Some nodes are offline as scheduled from" in site["lab"] and "The site is offline" in site["night"]
    assert "Network upgrade" in site["lab"] and "Resolved recently (1)" in site["lab"]
    for part in site.values():
        assert part.count('class="cell s-') == HISTORY_DAYS
    css = httpx.get(f"{agent.url}/static/status/status.css")
    assert css.status_code == 200 and ".history" in css.text

    data = httpx.get(f"{agent.url}/status.json").json()
    by_site = {s["site"]: s for s in data["sites"]}
    assert {name: s["state"] for name, s in by_site.items()} == {"lab": "down", "night": "offline", "quiet": "unknown"}
    assert data["overall"] == "down"
    lab = by_site["lab"]
    assert [p["title"] for p in lab["posts"]] == [POST_TITLE] and lab["posts"][0]["body"] == POST_BODY
    assert set(lab["posts"][0]) == {
        "id",
        "title",
        "body",
        "impact",
        "state",
        "published_at",
        "updated_at",
        "resolved_at",
    }
    assert [(m["what"], m["nodes"]) for m in lab["maintenance"]] == [("ongoing", 2), ("planned", 1)]
    assert lab["windows"] and all(not w["whole_site"] and w["nodes"] is None for w in lab["windows"])
    history = {h["date"]: h["state"] for h in lab["history"]}
    assert len(history) == HISTORY_DAYS
    today = datetime.now(UTC).date()
    assert history[today.isoformat()] == "down"  # reads failing now; the degraded post too
    assert history[(today - timedelta(days=10)).isoformat()] == "none"
    assert "degraded" in history.values() and "up" in history.values()
    assert {h["state"] for h in by_site["night"]["history"][-4:]} == {"offline"}  # failures while asleep: ignored

    atom = httpx.get(f"{agent.url}/status.atom")
    assert atom.status_code == 200 and atom.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(atom.content)
    assert feed.tag == f"{ATOM}feed"
    for tag in ("id", "title", "updated"):
        assert (feed.findtext(f"{ATOM}{tag}") or "").strip(), f"feed without {tag}"
    assert feed.findtext(f"{ATOM}author/{ATOM}name")
    entries = feed.findall(f"{ATOM}entry")
    for entry in entries:
        for tag in ("id", "title", "updated", "content"):
            assert (entry.findtext(f"{ATOM}{tag}") or "").strip(), f"entry without {tag}"
        datetime.fromisoformat(entry.findtext(f"{ATOM}updated") or "")
    assert len({e.findtext(f"{ATOM}id") for e in entries}) == len(entries)
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    assert f"lab: {POST_TITLE}" in titles and "lab: Network upgrade (resolved)" in titles
    assert "lab: Down" in titles and "lab: Degraded" in titles  # state changes, from the results
    assert titles.index("lab: Down") < titles.index("lab: Degraded")  # newest first

    assert_private_absent(html.text, atom.text, json.dumps(data))


def test_a_new_post_shows_once_the_short_cache_expires(agent: Agent) -> None:
    first = httpx.get(f"{agent.url}/status.json").json()
    agent.store.publish_status("quiet", "Planned power work", "Saturday morning.", "maintenance", OPERATORS[0])
    time.sleep(5.2)
    quiet = {s["site"]: s for s in httpx.get(f"{agent.url}/status.json").json()["sites"]}["quiet"]
    assert quiet["posts"][0]["title"] == "Planned power work" and quiet["state"] == "degraded"
    assert {s["site"]: s["state"] for s in first["sites"]}["quiet"] == "unknown"


def test_on_postgresql_too(tmp_path: Path, postgres: Postgres) -> None:
    """The UTC day of a result and the replay of changes are SQL of their own on PostgreSQL."""
    server, running = serve(tmp_path, postgres.create_database("status_page"))
    try:
        fill(running.store, datetime.now(UTC))
        data = httpx.get(f"{running.url}/status.json").json()
        lab = {s["site"]: s for s in data["sites"]}["lab"]
        assert lab["state"] == "down" and lab["history"][-1]["state"] == "down"
        assert "degraded" in {h["state"] for h in lab["history"]}
        feed = ET.fromstring(httpx.get(f"{running.url}/status.atom").content)
        assert "lab: Down" in [e.findtext(f"{ATOM}title") for e in feed.findall(f"{ATOM}entry")]
    finally:
        server.stop()
        running.store.close()


def test_90_days_of_hourly_results_and_a_year_of_posts_build_from_bounded_queries(tmp_path: Path) -> None:
    server, running = serve(tmp_path)
    try:
        now = datetime.now(UTC)
        checks = [("probe", p) for p in PROBES] + [("smoke", s) for s in ("token-issue", "list-nodes", "network-port")]
        rows = [
            {
                "site": site,
                "source": source,
                "name": name,
                "status": "failed" if hours % 97 == 0 and name == "tls" else "passed",
                "started_at": now - timedelta(hours=hours),
                "seconds": 0.1,
                "message": MESSAGE,
                "report": None,
            }
            for site in ("lab", "quiet")
            for hours in range(HISTORY_DAYS * 24)
            for source, name in checks
        ]
        with running.store.session() as session:
            session.execute(insert(DetectResult), rows)
        for day in range(365):
            post = running.store.publish_status(
                "lab", f"post {day}", "text", "degraded", "x", now - timedelta(days=day)
            )
            if day:
                running.store.resolve_status(post.id, "x", now - timedelta(days=day, hours=-3))
        # a cold build and a warm one read the same bounded queries; their time is bench/dashboard.py's to measure
        statements: list[str] = []
        event.listen(running.store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        web = WebState(running.settings, running.store)
        Builder(web).build(now)
        cold = len(statements)
        builder = Builder(web)
        builder.build(now)
        statements.clear()
        builder.build(now)
        assert 0 < len(statements) <= cold, (cold, statements)
        assert httpx.get(f"{running.url}/status").status_code == 200
    finally:
        server.stop()
        running.store.close()
