"""Who is asking: the session cookie, the logged-in Account, and the Viewer/Operator dependencies of every page.

The cookie holds a random token (the store keeps only its SHA-256); a form that changes something must carry the
session's CSRF token as well, so another site cannot make a logged-in browser act (SameSite=Strict is the second
lock, not the only one).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request

from hammersmith.web.state import WebState

SESSION_COOKIE = "hammersmith_session"
#: the login form's own double-submit token: before a session exists there is no session CSRF token
LOGIN_CSRF_COOKIE = "hammersmith_login_csrf"
SESSION_TTL = timedelta(hours=12)
ROLES = ("viewer", "operator")
#: methods that only read: every other one must carry the CSRF token
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: where a `next` may send the browser: a path on this site, never `//host` or `/\host` (other sites)
LOCAL_PATH = re.compile(r"/(?![/\\])[^\s\\]*")


@dataclass(frozen=True)
class Account:
    """The logged-in person as pages see it; csrf_token goes into every form that changes something."""

    name: str
    role: str
    csrf_token: str

    @property
    def operator(self) -> bool:
        return self.role == "operator"


class NotLoggedIn(Exception):
    """No valid session: a GET goes to the login page (then back to `path`), anything else is refused."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Refused(Exception):
    """Logged in, but not allowed (a viewer acting) or the form is not ours (CSRF): a short 403 page."""

    def __init__(self, message: str, account: Account | None = None, status_code: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.account = account
        self.status_code = status_code


def local_path(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this site, else `default`: a `next` must never redirect to another site."""
    return target if target and LOCAL_PATH.fullmatch(target) else default


def web_state(request: Request) -> WebState:
    """The agent's store, settings and last snapshots (set by `dashboard.mount`)."""
    web: WebState = request.app.state.dashboard_web
    return web


Web = Annotated[WebState, Depends(web_state)]


def viewer(request: Request, web: Web) -> Account:
    """Any logged-in person. A plain `def`: FastAPI runs it in its thread pool, so the store query never blocks
    the event loop."""
    token = request.cookies.get(SESSION_COOKIE)
    found = web.store.session_user(token) if token else None
    if found is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise NotLoggedIn(here)
    user, csrf = found
    return Account(name=user.name, role=user.role, csrf_token=csrf)


async def operator(request: Request, account: Annotated[Account, Depends(viewer)]) -> Account:
    """An operator; for anything but a read, the form's `csrf_token` must equal the session's."""
    if not account.operator:
        raise Refused(f"{account.name} is a viewer: only operators may change anything here.", account)
    if request.method not in SAFE_METHODS:
        check_form(request, (await request.form()).get("csrf_token"), account.csrf_token, account)
    return account


def check_form(request: Request, sent: object, expected: str, account: Account | None = None) -> None:
    """Refuse a form that another site made: the browser says so (Sec-Fetch-Site), or the token is wrong."""
    # a browser names where the request came from; anything but this origin (or the user typing) is refused
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Refused("This form was sent from another site, so nothing was done.", account)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Refused(
            "This form has no valid CSRF token (it expired, or it came from another site): nothing was done.", account
        )


Viewer = Annotated[Account, Depends(viewer)]
Operator = Annotated[Account, Depends(operator)]
