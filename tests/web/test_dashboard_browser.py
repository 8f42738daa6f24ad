"""The dashboard in a real browser (Debian's chromium): log in, read the overview's plot, open a node, filter the
ledger. Screenshots go to test-artifacts/screenshots/ (dashboard-overview.png and dashboard-node.png are the ones
docs/img/ shows)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.web.conftest import screenshot
from tests.web.test_dashboard_pages import OPERATOR, PASSWORD, Dashboard, dashboard  # noqa: F401 (the fixture)


def log_in(page: Page, url: str) -> None:
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    page.fill('input[name="name"]', OPERATOR)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    expect(page).to_have_url(url + "/")


def test_overview_plot_node_page_and_ledger_filter(dashboard: Dashboard, page: Page) -> None:  # noqa: F811
    log_in(page, dashboard.url)
    lab = page.locator("#site-lab")
    plot = lab.locator("svg.nodes-plot")
    expect(plot).to_be_visible()
    assert int(plot.get_attribute("data-points") or 0) >= 2
    # every series is drawn with an area, not an empty path: the plot has data
    heights = plot.locator("path.series").evaluate_all("paths => paths.map(p => p.getBBox().height)")
    assert heights and all(h > 0 for h in heights)
    legend = lab.locator("ul.legend li")
    assert legend.count() == len(heights) + 1  # and the maintenance line
    expect(lab.locator(".freshness")).to_have_class(re.compile(r"\bok\b"))
    screenshot(page, "dashboard-overview")

    link = lab.locator("a.node-link").last  # the open incident's node: its page has the most to show
    name = link.inner_text()
    link.click()
    expect(page).to_have_url(re.compile(r"/nodes/lab/"))
    expect(page.locator("h1")).to_contain_text(f"Node {name}")
    expect(page.locator("#ironic")).to_contain_text("provision state")
    expect(page.locator("#nova .not-read")).to_contain_text("not read")
    screenshot(page, "dashboard-node")

    hammer = dashboard.store.ledger_page(site="lab", limit=1)[0].hammer
    page.goto(dashboard.url + "/ledger")
    every = set(page.locator("table.ledger tbody tr").evaluate_all("rows => rows.map(r => r.dataset.hammer)"))
    page.fill('#ledger-filters input[name="hammer"]', hammer)
    page.click('#ledger-filters button[type="submit"]')
    expect(page).to_have_url(re.compile(rf"hammer={re.escape(hammer)}"))
    rows = page.locator("table.ledger tbody tr")
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.hammer)")
    assert shown and set(shown) == {hammer}
    assert len(every) > 1, "the unfiltered ledger had other hammers' rows (users, other hammers) to filter out"
    expect(rows.first.locator("td.hammer a")).to_have_attribute("href", f"/runbooks/{hammer}")
