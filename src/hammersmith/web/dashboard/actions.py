"""What an operator changes from the dashboard: pause and resume hammers, reset a breaker, publish and resolve
status posts, resolve an incident by hand. Each is a POST form carrying the session's CSRF token (the Operator
dependency checks both the role and the token); each is in the ledger with the person's name; each answers with a
303 back to the form's `next` (a local path only), so a reload never repeats it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from hammersmith.react import hammers
from hammersmith.store.pauses import ALL
from hammersmith.store.status_posts import IMPACTS
from hammersmith.web.dashboard.auth import Account, Operator, Refused, Web, local_path
from hammersmith.web.state import WebState

log = logging.getLogger(__name__)

router = APIRouter(prefix="/ui/actions")

MAX_REASON = 500
MAX_TITLE = 255
MAX_TEXT = 5000
#: longest pause the form offers a bound for: a month (longer is "until resumed")
MAX_PAUSE_HOURS = 24 * 31
#: a by-hand fix longer than a week is a typo, and it would skew the toil ranking for years
MAX_MINUTES = 7 * 24 * 60


class _Form:
    """The posted fields, each read with its check; a bad one is a 400 page naming it, and nothing is done."""

    def __init__(self, form: FormData, account: Account) -> None:
        self.form = form
        self.account = account

    def bad(self, message: str) -> Refused:
        return Refused(message, self.account, status_code=400)

    def text(self, field: str, limit: int, *, required: bool = True) -> str:
        value = self.form.get(field, "")
        value = value.strip() if isinstance(value, str) else ""
        if required and not value:
            raise self.bad(f"The form's {field} is empty: say it, it is shown in the ledger.")
        if len(value) > limit:
            raise self.bad(f"The form's {field} is too long ({len(value)} characters, at most {limit}).")
        return value

    def number(self, field: str, low: float, high: float, *, required: bool = True) -> float | None:
        raw = self.text(field, 32, required=required)
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise self.bad(f"The form's {field} is not a number: {raw!r}.") from None
        if not math.isfinite(value) or not low < value <= high:
            raise self.bad(f"The form's {field} must be more than {low:g} and at most {high:g}, not {raw}.")
        return value

    def ident(self, field: str) -> int:
        raw = self.text(field, 20)
        if not raw.isdigit():
            raise self.bad(f"The form's {field} is not an id: {raw!r}.")
        return int(raw)

    def site(self, web: WebState) -> str:
        site = self.text("site", 64)
        if site not in web.settings.sites:
            raise self.bad(f"There is no site named {site!r} here (known: {', '.join(sorted(web.settings.sites))}).")
        return site

    def hammer(self) -> str:
        hammer = self.text("hammer", 64, required=False) or ALL
        known = hammers.load()
        if hammer != ALL and hammer not in known:
            raise self.bad(f"There is no hammer named {hammer!r} (known: {', '.join(sorted(known))}, or * for all).")
        return hammer

    @property
    def next(self) -> str:
        raw = self.form.get("next")
        return local_path(raw if isinstance(raw, str) else None)


async def _form(request: Request, account: Account) -> _Form:
    return _Form(await request.form(), account)


async def _run(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A store call off the event loop: the pages of other people keep rendering while it writes."""
    return await anyio.to_thread.run_sync(lambda: call(*args, **kwargs))


def _back(form: _Form) -> Response:
    return RedirectResponse(form.next, status_code=303)


@router.post("/pause")
async def pause(request: Request, account: Operator, web: Web) -> Response:
    """Stop one hammer (or every one, "*") from acting at a site, until resumed or for `hours`."""
    form = await _form(request, account)
    site, hammer = form.site(web), form.hammer()
    reason = form.text("reason", MAX_REASON)
    hours = form.number("hours", 0, MAX_PAUSE_HOURS, required=False)
    now = datetime.now(UTC)
    until = now + timedelta(hours=hours) if hours is not None else None
    row = await _run(web.store.pause, site, hammer, reason, account.name, until, now, trigger="web")
    log.info("dashboard: %s paused %s at %s (#%d): %s", account.name, hammer, site, row.id, reason)
    return _back(form)


@router.post("/resume")
async def resume(request: Request, account: Operator, web: Web) -> Response:
    """End the site's pauses (every one, or one hammer's)."""
    form = await _form(request, account)
    site, hammer = form.site(web), form.hammer()
    resumed = await _run(web.store.resume, site, hammer, account.name, trigger="web")
    log.info("dashboard: %s resumed %s at %s (%d pause(s) ended)", account.name, hammer, site, len(resumed))
    return _back(form)


@router.post("/breaker-reset")
async def breaker_reset(request: Request, account: Operator, web: Web) -> Response:
    """Close the site's breaker on this person's word, written to the ledger with their name."""
    form = await _form(request, account)
    site = form.site(web)
    if await _run(web.store.reset_breaker, site, account.name, trigger="web"):
        log.info("dashboard: %s reset the breaker at %s", account.name, site)
    return _back(form)


@router.post("/status-publish")
async def status_publish(request: Request, account: Operator, web: Web) -> Response:
    """Publish a post on the public status page: what users read, so only what the operator wrote."""
    form = await _form(request, account)
    site = form.site(web)
    title, body = form.text("title", MAX_TITLE), form.text("body", MAX_TEXT)
    impact = form.text("impact", 16)
    if impact not in IMPACTS:
        raise form.bad(f"The impact {impact!r} is not one of: {', '.join(IMPACTS)}.")
    post = await _run(web.store.publish_status, site, title, body, impact, account.name)
    log.info("dashboard: %s published status post #%d at %s (%s)", account.name, post.id, site, impact)
    return _back(form)


@router.post("/status-resolve")
async def status_resolve(request: Request, account: Operator, web: Web) -> Response:
    """Mark a status post resolved (it stays in the page's history)."""
    form = await _form(request, account)
    post_id = form.ident("post_id")
    if await _run(web.store.resolve_status, post_id, account.name) is None:
        raise form.bad(f"There is no status post #{post_id}.")
    log.info("dashboard: %s resolved status post #%d", account.name, post_id)
    return _back(form)


@router.post("/incident-resolve")
async def incident_resolve(request: Request, account: Operator, web: Web) -> Response:
    """Close an incident fixed by hand, with the minutes it took and what was done: the toil ranking's data."""
    form = await _form(request, account)
    incident_id = form.ident("incident_id")
    minutes = form.number("minutes", 0, MAX_MINUTES)
    note = form.text("note", MAX_TEXT)
    done = await _run(
        web.store.resolve_incident_by_hand, incident_id, by=account.name, minutes=minutes, note=note, trigger="web"
    )
    if done is None:
        raise form.bad(f"There is no incident #{incident_id}.")
    log.info("dashboard: %s resolved incident #%d by hand (%g min)", account.name, incident_id, minutes)
    return _back(form)
