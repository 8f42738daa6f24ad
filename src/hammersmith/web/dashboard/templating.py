"""Rendering the dashboard's pages: one Jinja2 environment (autoescape on) over src/hammersmith/web/templates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from hammersmith.web.dashboard.auth import Account

TEMPLATES = Path(__file__).parents[1] / "templates"

#: every dashboard answer: private data is never cached, and no other site may frame a page (clickjacking a form)
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


def _utc(when: datetime) -> datetime:
    # the store's datetimes are aware (UTC); a naive one is taken as UTC rather than the server's local time
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the largest unit that fits: "just now", "3 min ago", "5 h ago", "2 days ago" ("in ..."
    for a time ahead, "never" for None)."""
    if when is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - _utc(when)).total_seconds())
    ahead, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "just now"
    for unit, size in (("day", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            text = f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
            return f"in {text}" if ahead else f"{text} ago"
    return "in 1 min" if ahead else "1 min ago"


def ts(when: datetime | None) -> str:
    """A timestamp as the pages show it, always UTC to the minute: "2026-12-01 04:05 UTC" ("" for None)."""
    return "" if when is None else _utc(when).strftime("%Y-%m-%d %H:%M UTC")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        # a misspelt variable fails the page (and its test) instead of rendering as an empty string
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, ts=ts)
    env.globals.update(ago=ago, ts=ts)
    return env


ENV = _environment()


def render(
    request: Request, template: str, account: Account | None, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """The page `template` (e.g. "dashboard/overview.html") with `request`, `account` and `context`.

    Forms macros read `request` for the path to come back to: import them `with context`.
    """
    html = ENV.get_template(template).render(request=request, account=account, **context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)
