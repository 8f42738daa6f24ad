"""Acting from the dashboard in a real browser (Chromium): log in through the form, pause a site's hammers from
the overview, and the refusals: a viewer has no buttons and a forged POST from their session gets 403; a form made
by another site (in the page, or served from another origin of the same host) changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from hammersmith.web.app import Server
from tests.web.conftest import screenshot
from tests.web.test_auth import OPERATOR, PASSWORD, SITE, VIEWER, Dashboard, make_dashboard

#: another origin on the agent's host (same site for cookies, as a second service on the box would be); the
#: browser never reaches it: Playwright answers it with the attacker's page
ELSEWHERE = "http://127.0.0.1:65001"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Dashboard, str]]:
    board = make_dashboard(tmp_path)
    server = Server(board.app, "127.0.0.1", 0).start()  # type: ignore[arg-type]
    try:
        yield board, server.url
    finally:
        server.stop()
        board.store.close()


def log_in(page: Page, url: str, name: str, shot: str | None = None) -> None:
    """Open the overview, be sent to the login form, fill it in, and land back on the overview."""
    page.goto(f"{url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    if shot:
        screenshot(page, shot)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{url}/")
    expect(page.locator("nav .who .user")).to_have_text(name)


def forged_form(action: str, fields: dict[str, str]) -> str:
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    return f'<h1>Win a prize</h1><form id="evil" method="post" action="{action}">{inputs}<button>Claim</button></form>'


def test_an_operator_pauses_a_site_from_the_overview(page: Page, agent: tuple[Dashboard, str]) -> None:
    board, url = agent
    log_in(page, url, OPERATOR, shot="dashboard-login")
    form = page.locator(f'form.pause[data-site="{SITE}"]')
    form.locator('input[name="reason"]').fill("BMC firmware upgrade, rack 4")
    form.get_by_role("button").click()
    expect(page).to_have_url(f"{url}/")  # 303 back to where the form was
    (paused,) = board.store.pauses(SITE)
    assert (paused.by, paused.hammer, paused.reason) == (OPERATOR, "*", "BMC firmware upgrade, rack 4")
    (row,) = board.store.actions(hammer="pause")
    assert (row.kind, row.agent, row.site) == ("pause", OPERATOR, SITE)
    expect(page.locator(f'form.resume[data-site="{SITE}"]')).to_be_visible()  # the overview shows the pause
    screenshot(page, "dashboard-operator-paused")
    page.goto(f"{url}/ledger?site={SITE}&hammer=pause")
    expect(page.locator("main")).to_contain_text(OPERATOR)
    expect(page.locator("main")).to_contain_text("BMC firmware upgrade, rack 4")
    screenshot(page, "dashboard-ledger-names-the-operator")

    page.goto(f"{url}/")
    page.locator(f'form.resume[data-site="{SITE}"] button').click()
    expect(page.locator(f'form.pause[data-site="{SITE}"]')).to_be_visible()
    assert board.store.pauses(SITE) == []
    assert [(a.kind, a.agent) for a in board.store.actions(hammer="pause")] == [
        ("resume", OPERATOR),
        ("pause", OPERATOR),
    ]


def test_a_viewer_has_no_buttons_and_a_forged_post_gets_403(page: Page, agent: tuple[Dashboard, str]) -> None:
    board, url = agent
    log_in(page, url, VIEWER)
    expect(page.locator('form[action^="/ui/actions/"]')).to_have_count(0)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    screenshot(page, "dashboard-viewer-overview")
    # the viewer builds the form by hand, with their own session's valid CSRF token: still not an operator
    token = page.locator('form[action="/logout"] input[name="csrf_token"]').get_attribute("value")
    assert token
    fields = {"csrf_token": token, "site": SITE, "hammer": "*", "reason": "I am a viewer"}
    page.evaluate(
        """([html]) => { document.querySelector("main").innerHTML = html; }""",
        [forged_form("/ui/actions/pause", fields)],
    )
    with page.expect_navigation() as answer:
        page.locator("#evil button").click()
    response = answer.value
    assert response is not None and response.status == 403
    expect(page.locator("main")).to_contain_text(f"{VIEWER} is a viewer")
    screenshot(page, "dashboard-viewer-refused")
    assert board.store.pauses(SITE) == [] and board.store.actions(hammer="pause") == []


def test_forms_made_by_another_site_change_nothing(page: Page, agent: tuple[Dashboard, str]) -> None:
    board, url = agent
    log_in(page, url, OPERATOR)
    fields = {"site": SITE, "hammer": "*", "reason": "forged", "csrf_token": "guessed"}

    # 1. a page of its own (page.set_content in a fresh tab: no origin at all), posting to the agent
    evil = page.context.new_page()
    evil.set_content(forged_form(f"{url}/ui/actions/pause", fields))
    with evil.expect_navigation() as answer:
        evil.locator("#evil button").click()
    assert answer.value is not None and answer.value.status == 403
    # the browser kept the SameSite=Strict session cookie to itself, and said where the form came from
    expect(evil.locator("main")).to_contain_text("This form was sent from another site, so nothing was done.")
    screenshot(evil, "dashboard-forged-form-refused")
    evil.close()

    # 2. served from another origin on the same host: same site, so the Strict session cookie IS sent; the
    # browser's Sec-Fetch-Site says "same-site", not "same-origin", and that is refused before the token
    def attacker(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body=forged_form(f"{url}/ui/actions/pause", fields))

    page.route(f"{ELSEWHERE}/**", attacker)
    page.goto(f"{ELSEWHERE}/prize.html")
    with page.expect_navigation() as answer:
        page.locator("#evil button").click()
    assert answer.value is not None and answer.value.status == 403
    expect(page.locator("main")).to_contain_text("This form was sent from another site, so nothing was done.")
    expect(page.locator("nav .who .user")).to_have_text(OPERATOR)  # the cookie was sent: refused all the same

    # 3. on the agent's own page (same origin: an injected form), with a wrong token
    page.goto(f"{url}/")
    page.evaluate(
        """([html]) => { document.querySelector("main").innerHTML = html; }""",
        [forged_form("/ui/actions/pause", {**fields, "csrf_token": "not-the-session-token"})],
    )
    with page.expect_navigation() as answer:
        page.locator("#evil button").click()
    assert answer.value is not None and answer.value.status == 403
    expect(page.locator("main")).to_contain_text("no valid CSRF token")

    assert board.store.pauses(SITE) == [] and board.store.actions(hammer="pause") == []
    # and the operator is still logged in: nothing logged them out either
    page.goto(f"{url}/")
    expect(page.locator("nav .who .user")).to_have_text(OPERATOR)


def test_the_cookie_and_logging_out_from_the_nav(page: Page, agent: tuple[Dashboard, str]) -> None:
    _, url = agent
    log_in(page, url, OPERATOR)
    (session,) = [c for c in page.context.cookies() if c["name"] == "hammersmith_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and not session["secure"]  # plain http here
    assert page.evaluate("document.cookie") == ""  # no script can read it
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{url}/login")
    page.goto(f"{url}/ledger")
    expect(page).to_have_url(re.compile(r"/login\?next=/ledger$"))
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert "hammersmith_session" not in cookies
