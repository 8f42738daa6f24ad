"""Dashboard accounts over HTTP: login and logout, the session cookie, expiry, CSRF, and who may act.

The agent's real app on a real store (SQLite in a tmp dir), through Starlette's TestClient; the browser tests
(tests/web/test_dashboard_actions.py) do the same in Chromium.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import pytest
import yaml
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from hammersmith import config
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.store import Store, open_store
from hammersmith.store.models import WebSession
from hammersmith.web.app import create_app
from hammersmith.web.dashboard.auth import SESSION_COOKIE, Viewer, local_path
from hammersmith.web.dashboard.templating import ENV, ago, ts
from hammersmith.web.state import WebState

SITE = "lab"
OPERATOR, VIEWER, PASSWORD = "alice", "victor", "correct horse"
#: a page of every form, for the tests (the real pages are PAGES's; the forms and their checks are the same)
FORMS_PAGE = "/test-forms"
ACTIONS = ("pause", "resume", "breaker-reset", "status-publish", "status-resolve", "incident-resolve")


TEST_FORMS = """{% extends "dashboard/base.html" %}
{% import "dashboard/forms.html" as forms with context %}
{% block content %}
<h1>forms</h1>
{{ forms.pause_form(account, site) }}
{{ forms.resume_form(account, site) }}
{{ forms.breaker_reset_form(account, site) }}
{{ forms.status_publish_form(account, site) }}
{{ forms.status_resolve_form(account, post) }}
{{ forms.incident_resolve_form(account, incident) }}
{% endblock %}
"""


@dataclass
class Dashboard:
    store: Store
    app: object
    settings: config.Settings


def write_config(directory: Path) -> Path:
    path = directory / "hammersmith.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(directory), "sites": {SITE: {"cloud": "nowhere"}}}))
    return path


def forms_page(request: Request, account: Viewer) -> Response:
    """Every form macro, for one site, one status post and one incident (ids the tests make)."""
    post, incident = {"id": request.query_params.get("post", "1")}, {"id": request.query_params.get("incident", "1")}
    html = ENV.from_string(TEST_FORMS).render(request=request, account=account, site=SITE, post=post, incident=incident)
    return HTMLResponse(html)


def make_dashboard(directory: Path) -> Dashboard:
    """The agent's app with the dashboard on a fresh store, an operator and a viewer, and the forms page."""
    settings = config.load(write_config(directory))
    store = open_store(settings.effective_store_url, settings.state_dir)
    store.add_user(OPERATOR, PASSWORD, "operator", by="test")
    store.add_user(VIEWER, PASSWORD, "viewer", by="test")
    app = create_app(
        Exporter(Telemetry([SITE]), collectors={}, prime=False), settings=settings, web=WebState(settings, store)
    )
    app.add_api_route(FORMS_PAGE, forms_page, methods=["GET"])
    return Dashboard(store, app, settings)


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dashboard]:
    board = make_dashboard(tmp_path)
    try:
        yield board
    finally:
        board.store.close()


def client(board: Dashboard, base_url: str = "http://testserver") -> TestClient:
    return TestClient(board.app, base_url=base_url, follow_redirects=False)  # type: ignore[arg-type]


def hidden(html: str, name: str = "csrf_token") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in the page"
    return found.group(1)


def login(http: TestClient, name: str, password: str = PASSWORD, next_path: str = "/") -> Response:
    form = http.get("/login", params={"next": next_path})
    assert form.status_code == 200
    data = {"name": name, "password": password, "csrf_token": hidden(form.text), "next": hidden(form.text, "next")}
    return http.post("/login", data=data)  # type: ignore[return-value]


def logged_in(board: Dashboard, name: str) -> tuple[TestClient, str]:
    """A client with a session, and that session's CSRF token (read from a page, as a browser would)."""
    http = client(board)
    assert login(http, name).status_code == 303
    return http, hidden(http.get(FORMS_PAGE).text)


def sessions(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(WebSession)) or 0


def ledger(store: Store, hammer: str) -> list[tuple[str, str | None]]:
    return [(a.kind, a.agent) for a in store.actions(hammer=hammer)]


# -- pure helpers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ledger?site=lab", "/ledger?site=lab"),
        ("/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("ledger", "/"),
        ("/a b", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_next_is_a_local_path_or_the_overview(target: str | None, expected: str) -> None:
    assert local_path(target) == expected


def test_times_read_the_same_everywhere() -> None:
    now = datetime(2026, 12, 1, 4, 5, tzinfo=UTC)
    assert ts(now) == "2026-12-01 04:05 UTC" and ts(None) == ""
    assert ts(datetime(2026, 12, 1, 4, 5)) == "2026-12-01 04:05 UTC"  # naive: taken as UTC
    assert ago(now - timedelta(seconds=10), now) == "just now"
    assert ago(now - timedelta(minutes=3), now) == "3 min ago"
    assert ago(now - timedelta(hours=5, minutes=10), now) == "5 h ago"
    assert (
        ago(now - timedelta(days=1, hours=2), now) == "1 day ago" and ago(now - timedelta(days=9), now) == "9 days ago"
    )
    assert ago(now + timedelta(minutes=30), now) == "in 30 min" and ago(None, now) == "never"


# -- login, sessions, logout -------------------------------------------------------------------------------


def test_a_page_without_a_session_goes_to_login_and_back(dash: Dashboard) -> None:
    http = client(dash)
    page = http.get(FORMS_PAGE, params={"site": SITE})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/test-forms%3Fsite%3Dlab"
    form = http.get(page.headers["location"])
    assert form.status_code == 200 and hidden(form.text, "next") == f"{FORMS_PAGE}?site={SITE}"
    assert "Log out" not in form.text  # no nav for nobody
    assert form.headers["cache-control"] == "no-store" and form.headers["x-frame-options"] == "DENY"
    done = login(http, OPERATOR, next_path=f"{FORMS_PAGE}?site={SITE}")
    assert done.status_code == 303 and done.headers["location"] == f"{FORMS_PAGE}?site={SITE}"
    assert http.get(done.headers["location"]).status_code == 200


def test_the_session_cookie_is_strict_httponly_and_only_its_hash_is_stored(dash: Dashboard) -> None:
    http = client(dash)
    done = login(http, OPERATOR)
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/", "max-age=43200"} <= flags and "secure" not in flags
    token = http.cookies[SESSION_COOKIE]
    assert len(token) >= 40
    with dash.store.session() as session:
        stored = session.scalars(select(WebSession.token_hash)).all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]  # the token itself is nowhere in the store
    page = http.get(FORMS_PAGE)
    assert page.status_code == 200 and f"{OPERATOR}</span>" in page.text and "operator</span>" in page.text


def test_over_https_the_cookies_are_secure(dash: Dashboard) -> None:
    http = client(dash, "https://testserver")
    form = http.get("/login")
    assert "secure" in form.headers["set-cookie"].lower()
    done = login(http, OPERATOR)
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    assert "secure" in cookie.lower()


def test_logout_ends_the_session_in_the_store(dash: Dashboard) -> None:
    http, csrf = logged_in(dash, VIEWER)
    token = http.cookies[SESSION_COOKIE]
    forged = http.post("/logout", data={"csrf_token": "forged"})
    assert forged.status_code == 403 and dash.store.session_user(token) is not None  # another site can't log you out
    out = http.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert dash.store.session_user(token) is None and sessions(dash.store) == 0
    http.cookies.set(SESSION_COOKIE, token)  # a copied cookie is worth nothing after logout
    assert http.get(FORMS_PAGE).status_code == 303


def test_an_expired_session_is_refused_and_purged(dash: Dashboard) -> None:
    http, _ = logged_in(dash, OPERATOR)
    assert http.get(FORMS_PAGE).status_code == 200
    with dash.store.session() as session:
        session.execute(update(WebSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    page = http.get(FORMS_PAGE)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
    assert SESSION_COOKIE not in http.cookies  # the dead cookie is cleared
    assert sessions(dash.store) == 1  # still there, until the next login purges it
    logged_in(dash, VIEWER)
    assert sessions(dash.store) == 1


def test_the_session_lasts_twelve_hours(dash: Dashboard) -> None:
    before = datetime.now(UTC)
    logged_in(dash, OPERATOR)
    with dash.store.session() as session:
        expires = session.scalar(select(WebSession.expires_at))
    assert expires is not None and timedelta(hours=12) <= expires - before < timedelta(hours=12, minutes=1)


def test_wrong_password_and_unknown_user_get_the_same_answer(
    dash: Dashboard, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = client(dash)
    caplog.set_level(logging.INFO, logger="hammersmith")
    checks: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counted(password: bytes, hashed: bytes) -> bool:
        checks.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counted)  # a spy: the real bcrypt still does the work
    answers = [
        login(http, name, password)
        for name, password in ((OPERATOR, "wrong password"), ("nobody", "wrong password"), ("bad name!", "x" * 100))
    ]
    for answer in answers:
        assert answer.status_code == 401 and "Wrong user name or password." in answer.text
        assert SESSION_COOKIE not in http.cookies
    # every one paid one full bcrypt check, at the same cost factor: an unknown name is not answered faster
    assert len(checks) == 3 and len({hashed[:7] for hashed in checks}) == 1, checks
    assert sessions(dash.store) == 0
    failed = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert len(failed) == 3 and "'alice'" in failed[0] and "'nobody'" in failed[1]
    assert not any("wrong password" in r.getMessage() or "x" * 20 in r.getMessage() for r in caplog.records)


def test_login_needs_its_csrf_token(dash: Dashboard) -> None:
    http = client(dash)
    token = hidden(http.get("/login").text)
    data = {"name": OPERATOR, "password": PASSWORD, "next": "/"}
    for forged in ({}, {"csrf_token": "forged"}):
        answer = http.post("/login", data={**data, **forged})
        assert answer.status_code == 403 and "expired or came from another site" in answer.text
    http.cookies.clear()  # the token without its cookie: a form made elsewhere
    assert http.post("/login", data={**data, "csrf_token": token}).status_code == 403
    assert sessions(dash.store) == 0


def test_a_new_login_replaces_the_old_session(dash: Dashboard) -> None:
    http, _ = logged_in(dash, OPERATOR)
    first = http.cookies[SESSION_COOKIE]
    assert http.get("/login").headers["location"] == "/"  # logged in already: straight on
    other = client(dash)
    form = other.get("/login")
    other.cookies.set(SESSION_COOKIE, first)  # a session cookie from before the login (one planted, say)
    answer = other.post("/login", data={"name": OPERATOR, "password": PASSWORD, "csrf_token": hidden(form.text)})
    assert answer.status_code == 303
    new = re.search(rf"{SESSION_COOKIE}=([^;]+)", answer.headers["set-cookie"])
    assert new and new.group(1) != first
    assert dash.store.session_user(first) is None and dash.store.session_user(new.group(1)) is not None


def test_login_never_redirects_to_another_site(dash: Dashboard) -> None:
    http = client(dash)
    assert login(http, OPERATOR, next_path="//evil.example/").headers["location"] == "/"
    assert http.get("/login", params={"next": "https://evil.example/"}).headers["location"] == "/"


# -- actions: CSRF and roles -------------------------------------------------------------------------------


def action_data(board: Dashboard, action: str) -> dict[str, str]:
    """A valid form for each action (a status post and an incident made for the ones that need them)."""
    if action == "status-resolve":
        return {"post_id": str(board.store.publish_status(SITE, "Slow", "Deploys are slow.", "degraded", "test").id)}
    if action == "incident-resolve":
        return {"incident_id": str(open_incident(board.store)), "minutes": "12", "note": "reset the BMC"}
    if action == "status-publish":
        return {"site": SITE, "title": "Deploys fail", "body": "We are on it.", "impact": "down"}
    return {"site": SITE, "hammer": "*", "reason": "BMC firmware upgrade"}


def open_incident(store: Store) -> int:
    incident, _ = store.open_incident(
        site=SITE,
        alertname="IronicNodeError",
        fingerprint="f00d",
        starts_at=datetime.now(UTC),
        status="firing",
        labels={"alertname": "IronicNodeError"},
        annotations={},
        node="node-001",
        hammer=None,
        runbook_url=None,
        detail="test",
    )
    return incident


def changed(store: Store) -> tuple[int, int, int, int]:
    """What any action would change: pauses, ledger rows, status posts, closed incidents."""
    closed = sum(1 for i in store.incidents() if i.status == "resolved")
    return len(store.pauses(SITE)), len(store.actions()), len(store.status_posts()), closed


def test_forged_forms_change_nothing(dash: Dashboard) -> None:
    http, csrf = logged_in(dash, OPERATOR)
    data = action_data(dash, "pause")
    before = changed(dash.store)
    for forged in ({}, {"csrf_token": "forged"}, {"csrf_token": csrf[:-1]}, {"csrf_token": ""}):
        answer = http.post("/ui/actions/pause", data={**data, **forged})
        assert answer.status_code == 403 and "no valid CSRF token" in answer.text
    # the right token, but the browser says the form came from another site
    cross = http.post("/ui/actions/pause", data={**data, "csrf_token": csrf}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and "from another site" in cross.text
    # the token of another session is not this session's
    _, other = logged_in(dash, OPERATOR)
    assert http.post("/ui/actions/pause", data={**data, "csrf_token": other}).status_code == 403
    assert changed(dash.store) == before


def test_without_a_session_a_form_is_refused_not_replayed(dash: Dashboard) -> None:
    answer = client(dash).post("/ui/actions/pause", data={**action_data(dash, "pause"), "csrf_token": "x"})
    assert answer.status_code == 403 and "not logged in" in answer.text and dash.store.pauses(SITE) == []


@pytest.mark.parametrize("action", ACTIONS)
def test_a_viewer_gets_403_on_every_action(dash: Dashboard, action: str) -> None:
    http, csrf = logged_in(dash, VIEWER)
    data = action_data(dash, action)
    before = changed(dash.store)
    answer = http.post(f"/ui/actions/{action}", data={**data, "csrf_token": csrf})
    assert answer.status_code == 403 and f"{VIEWER} is a viewer" in answer.text
    assert changed(dash.store) == before


def test_a_viewer_sees_no_forms_an_operator_sees_each_with_its_token(dash: Dashboard) -> None:
    viewer, _ = logged_in(dash, VIEWER)
    page = viewer.get(FORMS_PAGE).text
    assert "/ui/actions/" not in page and 'action="/logout"' in page  # a viewer may still log out
    operator, csrf = logged_in(dash, OPERATOR)
    page = operator.get(FORMS_PAGE).text
    for action in ACTIONS:
        form = re.search(rf'<form method="post" action="/ui/actions/{action}".*?</form>', page, re.S)
        assert form, action
        assert f'name="csrf_token" value="{csrf}"' in form.group(0)
        assert f'name="next" value="{FORMS_PAGE}"' in form.group(0)


# -- actions: what an operator does lands in the store and the ledger, with their name -------------------------


def test_an_operators_pause_and_resume_are_in_the_ledger_with_their_name(dash: Dashboard) -> None:
    http, csrf = logged_in(dash, OPERATOR)
    data = {**action_data(dash, "pause"), "hours": "4", "csrf_token": csrf, "next": "/ledger?site=lab"}
    answer = http.post("/ui/actions/pause", data=data)
    assert answer.status_code == 303 and answer.headers["location"] == "/ledger?site=lab"
    (paused,) = dash.store.pauses(SITE)
    assert (paused.hammer, paused.by, paused.reason) == ("*", OPERATOR, "BMC firmware upgrade")
    assert paused.until is not None and timedelta(hours=3, minutes=59) < paused.until - paused.created_at
    assert ledger(dash.store, "pause") == [("pause", OPERATOR)]
    answer = http.post("/ui/actions/resume", data={"site": SITE, "hammer": "*", "csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/"  # no next: the overview
    assert dash.store.pauses(SITE) == [] and ledger(dash.store, "pause") == [("resume", OPERATOR), ("pause", OPERATOR)]


def test_a_breaker_reset_from_the_web_is_in_the_ledger_with_their_name(dash: Dashboard) -> None:
    http, csrf = logged_in(dash, OPERATOR)
    dash.store.open_breaker(SITE, "3 of 10 nodes failed")
    assert http.post("/ui/actions/breaker-reset", data={"site": SITE, "csrf_token": csrf}).status_code == 303
    breaker = dash.store.breaker(SITE)
    assert breaker is not None and (breaker.state, breaker.reset_by) == ("closed", OPERATOR)
    assert ledger(dash.store, "breaker") == [("reset", OPERATOR)]
    http.post("/ui/actions/breaker-reset", data={"site": SITE, "csrf_token": csrf})  # not open: nothing to record
    assert ledger(dash.store, "breaker") == [("reset", OPERATOR)]


def test_status_posts_and_hand_fixes_carry_the_operators_name(dash: Dashboard) -> None:
    http, csrf = logged_in(dash, OPERATOR)
    data = {**action_data(dash, "status-publish"), "csrf_token": csrf}
    assert http.post("/ui/actions/status-publish", data=data).status_code == 303
    (post,) = dash.store.status_posts()
    assert (post.title, post.impact, post.state, post.published_by) == ("Deploys fail", "down", "ongoing", OPERATOR)
    assert http.post("/ui/actions/status-resolve", data={"post_id": post.id, "csrf_token": csrf}).status_code == 303
    assert dash.store.status_posts(ongoing_only=True) == []
    incident = open_incident(dash.store)
    data = {"incident_id": str(incident), "minutes": "12.5", "note": "reset the BMC", "csrf_token": csrf}
    assert http.post("/ui/actions/incident-resolve", data=data).status_code == 303
    row = dash.store.incident(incident)
    assert row is not None and (row.status, row.resolved_by, row.manual_minutes) == ("resolved", OPERATOR, 12.5)
    by_web = [a for a in dash.store.actions() if a.agent == OPERATOR]
    assert len(by_web) >= 3  # publish, resolve, the hand fix: each a ledger row with the name
    hand_fix = next(a for a in by_web if a.node_uuid == f"incident/{incident}")
    assert hand_fix.trigger == "web"


@pytest.mark.parametrize(
    ("action", "data", "message"),
    [
        ("pause", {"site": "elsewhere", "hammer": "*", "reason": "x"}, "There is no site named &#39;elsewhere&#39;"),
        ("pause", {"site": SITE, "hammer": "no-such-hammer", "reason": "x"}, "There is no hammer named"),
        ("pause", {"site": SITE, "hammer": "*", "reason": "  "}, "reason is empty"),
        ("pause", {"site": SITE, "reason": "x", "hours": "-1"}, "hours must be more than 0"),
        ("resume", {"hammer": "*"}, "site is empty"),
        ("breaker-reset", {"site": "elsewhere"}, "There is no site named"),
        ("status-publish", {"site": SITE, "title": "t", "body": "b", "impact": "meh"}, "impact &#39;meh&#39;"),
        ("status-publish", {"site": SITE, "title": "t", "body": "", "impact": "down"}, "body is empty"),
        ("status-resolve", {"post_id": "999"}, "no status post #999"),
        ("status-resolve", {"post_id": "1; drop"}, "is not an id"),
        ("incident-resolve", {"incident_id": "999", "minutes": "5", "note": "n"}, "no incident #999"),
        ("incident-resolve", {"incident_id": "1", "minutes": "0", "note": "n"}, "minutes must be more than 0"),
        ("incident-resolve", {"incident_id": "1", "minutes": "nan", "note": "n"}, "minutes must be more than 0"),
        ("incident-resolve", {"incident_id": "1", "minutes": "5", "note": ""}, "note is empty"),
    ],
)
def test_bad_forms_are_a_400_that_says_why(dash: Dashboard, action: str, data: dict[str, str], message: str) -> None:
    http, csrf = logged_in(dash, OPERATOR)
    before = changed(dash.store)
    answer = http.post(f"/ui/actions/{action}", data={**data, "csrf_token": csrf})
    assert answer.status_code == 400 and message in answer.text, answer.text
    assert changed(dash.store) == before


def test_an_action_never_sends_the_browser_to_another_site(dash: Dashboard) -> None:
    http, csrf = logged_in(dash, OPERATOR)
    data = {**action_data(dash, "pause"), "csrf_token": csrf, "next": "https://evil.example/"}
    assert http.post("/ui/actions/pause", data=data).headers["location"] == "/"


def test_the_ledger_names_who_added_the_accounts(dash: Dashboard) -> None:
    rows = dash.store.actions(hammer="user")
    assert {(a.kind, a.node_uuid, a.agent) for a in rows} == {
        ("user-add", OPERATOR, "test"),
        ("user-add", VIEWER, "test"),
    }
    assert not any(PASSWORD in str(a.params) or PASSWORD in (a.reason or "") for a in rows)
    assert dash.store.actions(site=SITE) == []  # accounts are no site's: no site's ledger counts them
