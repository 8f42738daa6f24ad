"""The public status page in real Chromium against the light testbed: an outage injected into the real Ironic,
seen by the project's own smoke scenarios, shows the site degraded; an operator's incident post makes it down with
its text; nothing private is on the page."""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from hammersmith import config
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.store import Store, open_store
from hammersmith.web.app import Server, create_app
from hammersmith.web.state import WebState
from tests.conftest import Testbed, hammersmith, ironic_answers_500
from tests.web.conftest import screenshot

TITLE = "Deploys fail at the moment"
BODY = "The bare-metal API answers errors when nodes are listed in detail. We are on it; next update at 14:00 UTC."


@pytest.fixture
def agent(testbed: Testbed) -> Iterator[tuple[str, Store, str]]:
    """The agent's web app (the status page) on the testbed's own store; (url, store, site)."""
    settings = config.load(testbed.workdir / "hammersmith.yaml")
    store = open_store(settings.effective_store_url, settings.state_dir)
    app = create_app(
        Exporter(Telemetry(list(settings.sites)), collectors={}, prime=False),
        settings=settings,
        web=WebState(settings, store),
    )
    server = Server(app, "127.0.0.1", 0).start()
    try:
        yield server.url, store, settings.site(None)[0]
    finally:
        server.stop()
        for post in store.status_posts(ongoing_only=True):
            store.resolve_status(post.id, "test")
        store.close()


def private_strings(testbed: Testbed, store: Store, site: str, since: datetime) -> list[str]:
    """What must never be public: node names and UUIDs, the testbed's address and host name, the probe and smoke
    messages just recorded, and who published the post."""
    nodes = list(testbed.conn.baremetal.nodes())
    found = [n.name for n in nodes if n.name] + [n.id for n in nodes]
    found += [f"127.0.0.1:{testbed.state.port}", testbed.state.host, getpass.getuser()]
    found += [r.message for r in store.results(site=site, since=since) if r.message]
    assert len(nodes) >= 30 and any("HTTP 500" in m for m in found)
    return found


def test_an_injected_outage_and_an_incident_post_on_the_public_page(
    testbed: Testbed, agent: tuple[str, Store, str], page: Page
) -> None:
    url, store, site = agent
    since = datetime.now(UTC)
    probed = hammersmith("probe", cwd=testbed.workdir)  # the heartbeat: Ironic answers its plain reads
    assert probed.returncode == 0, probed.stderr
    with ironic_answers_500(testbed):  # a node Ironic cannot decode: detailed listings fail
        smoke = hammersmith("smoke", "run", "--set", "expensive", cwd=testbed.workdir)
    assert smoke.returncode == 1, smoke.stderr  # deploy-node could not list the nodes to pick one

    page.goto(f"{url}/status")
    section = page.locator(f"#site-{site}")
    expect(section).to_have_attribute("data-state", "degraded")
    expect(section.locator(".badge")).to_have_text("Degraded")
    expect(page.locator("#overall")).to_have_text(re.compile("Some sites have problems"))

    published = hammersmith(
        "status", "publish", "--title", TITLE, "--body", BODY, "--impact", "down", "--json", cwd=testbed.workdir
    )
    assert published.returncode == 0, published.stderr
    page.wait_for_timeout(5_200)  # the page is computed at most every 5 s
    page.reload()
    expect(section).to_have_attribute("data-state", "down")
    expect(section.locator(".post h3")).to_have_text(TITLE)
    expect(section.locator(".post .body")).to_have_text(BODY)
    expect(section.locator(".history .cell")).to_have_count(90)
    expect(section.locator(".history .cell").last).to_have_class(re.compile("s-down"))
    screenshot(page, "status-page")

    html = page.content()
    answers = [html, httpx.get(f"{url}/status.json").text, httpx.get(f"{url}/status.atom").text]
    assert json.loads(answers[1])["sites"][0]["posts"][0]["title"] == TITLE
    for secret in private_strings(testbed, store, site, since):
        for answer in answers:
            assert secret not in answer, f"{secret!r} is on the public status page"
