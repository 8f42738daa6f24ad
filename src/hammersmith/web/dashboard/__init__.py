"""The operators' dashboard (login required): sites overview, node pages, ledger, incidents, maintenance, toil.

This module wires it into the agent's app: the login and logout routes, the pages, the actions, and the two
answers every page shares (not logged in: to the login page; not allowed: a short 403 page).
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import quote

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from hammersmith.store.users import MAX_PASSWORD_BYTES, decoy_hash
from hammersmith.web.dashboard import actions, pages
from hammersmith.web.dashboard.auth import (
    LOGIN_CSRF_COOKIE,
    SAFE_METHODS,
    SESSION_COOKIE,
    SESSION_TTL,
    NotLoggedIn,
    Refused,
    check_form,
    local_path,
    web_state,
)
from hammersmith.web.dashboard.templating import render
from hammersmith.web.state import WebState

log = logging.getLogger(__name__)

# bcrypt checks at once, and logins waiting for one: a password-guessing flood costs two cores at most, and
# past the waiting room it gets 429 at once instead of a queue that grows without end
BCRYPT_THREADS = 2
BCRYPT_WAITING = 16

router = APIRouter()


class _Logins:
    """The bcrypt budget of the login form (one event loop: a plain counter needs no lock)."""

    def __init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(BCRYPT_THREADS)
        self.waiting = 0


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(
    request: Request, *, next_path: str, name: str = "", error: str = "", status_code: int = 200
) -> Response:
    """The login form with a fresh double-submit token (cookie and hidden field hold the same random value)."""
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "dashboard/login.html",
        None,
        status_code=status_code,
        csrf_token=token,
        next=next_path,
        name=name,
        error=error,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, path="/login", httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002 -- the query parameter's name
    """The login page; someone already logged in goes straight on."""
    token = request.cookies.get(SESSION_COOKIE)
    if token and web_state(request).store.session_user(token) is not None:
        return RedirectResponse(local_path(next), status_code=303)
    return _login_page(request, next_path=local_path(next))


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the name and password (bcrypt, off the event loop), then start a session: a new token every time."""
    form = await request.form()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    next_path = local_path(str(form.get("next", "/")))
    client = request.client.host if request.client else "?"
    try:
        check_form(request, form.get("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE, ""))
    except Refused:
        log.warning("dashboard login from %s refused: the form's CSRF token is missing or wrong", client)
        error = "The login form expired or came from another site. Please try again."
        return _login_page(request, next_path=next_path, name=name[:64], error=error, status_code=403)
    logins: _Logins = request.app.state.dashboard_logins
    if logins.waiting >= BCRYPT_WAITING:
        log.warning("dashboard login for %r from %s refused: too many logins at once", name[:64], client)
        error = "Too many logins at once. Please try again in a moment."
        return _login_page(request, next_path=next_path, name=name[:64], error=error, status_code=429)
    store = web_state(request).store
    logins.waiting += 1
    try:
        user = await anyio.to_thread.run_sync(store.check_password, name, password, limiter=logins.limiter)
    finally:
        logins.waiting -= 1
    if user is None:
        # the same words for an unknown name and a wrong password; the log names neither password nor reason
        log.warning("dashboard login failed for %r from %s", name[:64], client)
        too_long = len(password.encode()) > MAX_PASSWORD_BYTES
        error = "Wrong user name or password." + (" (Passwords are at most 72 bytes.)" if too_long else "")
        return _login_page(request, next_path=next_path, name=name[:64], error=error, status_code=401)
    old = request.cookies.get(SESSION_COOKIE)
    if old:  # a new session on every login: a token planted before the login is worth nothing after it
        await anyio.to_thread.run_sync(store.delete_session, old)
    token, _ = await anyio.to_thread.run_sync(store.create_session, user.id, SESSION_TTL)
    log.info("dashboard login: %s (%s) from %s", user.name, user.role, client)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login", httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (CSRF-checked: another site must not log you out); with no valid session, just go."""
    token = request.cookies.get(SESSION_COOKIE)
    store = web_state(request).store
    found = await anyio.to_thread.run_sync(store.session_user, token) if token else None
    if found is not None:
        check_form(request, (await request.form()).get("csrf_token"), found[1])
        await anyio.to_thread.run_sync(store.delete_session, token)
        log.info("dashboard logout: %s", found[0].name)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


def _not_logged_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotLoggedIn)
    if request.method in SAFE_METHODS:
        response: Response = RedirectResponse(f"/login?next={quote(exc.path, safe='/')}", status_code=303)
    else:  # a form sent without a session: refused, never replayed after a login
        if request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none"):
            heading, message = "Not logged in", "You are not logged in (or your session expired), so nothing was done."
        else:  # from another site, the browser kept the SameSite=Strict session cookie to itself
            heading, message = "Not allowed", "This form was sent from another site, so nothing was done."
        response = render(
            request, "dashboard/error.html", None, status_code=403, heading=heading, message=message, login="/login"
        )
    if request.cookies.get(SESSION_COOKIE):
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    who = exc.account.name if exc.account else "?"
    log.warning("dashboard %s %s refused for %s: %s", request.method, request.url.path, who, exc.message)
    return render(
        request,
        "dashboard/error.html",
        exc.account,
        status_code=exc.status_code,
        heading="Not allowed" if exc.status_code == 403 else "Cannot do that",
        message=exc.message,
        login=None,
    )


def mount(app: FastAPI, web: WebState) -> None:
    """Add the dashboard's routes to the agent's app."""
    app.state.dashboard_web = web
    decoy_hash()  # made now, not at the first unknown name: that login would take twice as long as any other
    app.state.dashboard_logins = _Logins()
    app.include_router(router)
    app.include_router(actions.router)
    app.include_router(pages.router)
    app.add_exception_handler(NotLoggedIn, _not_logged_in)
    app.add_exception_handler(Refused, _refused)
