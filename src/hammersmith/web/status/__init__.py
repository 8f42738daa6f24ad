"""The public status page (no login): per-site health, published incidents, planned maintenance, feeds.

GET /status (HTML, no JavaScript), /status.json (the same data) and /status.atom (posts and state changes). What
is shown and why is in docs/status-page.md; what is never shown is enforced by `data`, which hands over states,
counts, times and the operators' own posts only.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from hammersmith.web.state import WebState
from hammersmith.web.status import feed, health
from hammersmith.web.status.data import Builder, StatusPage

TEMPLATES = Path(__file__).parents[1] / "templates"
#: public and cacheable for as long as the page is; nothing here may be framed or sniffed into something else
HEADERS = {
    "Cache-Control": "public, max-age=5",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'",
}


def _ts(when: datetime | None) -> str:
    return "" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined, trim_blocks=True)
    env.filters["ts"] = _ts
    env.globals["labels"] = health.LABELS
    return env


class Rendered:
    """Each answer rendered once per computed page: a refresh within the cache time costs a lookup."""

    def __init__(self, builder: Builder, env: Environment) -> None:
        self.builder, self.env = builder, env
        self._lock = threading.Lock()
        self._page: StatusPage | None = None
        self._answers: dict[str, bytes] = {}

    def get(self, kind: str) -> bytes:
        page = self.builder.page()
        with self._lock:
            if page is not self._page:
                self._page, self._answers = page, {}
            if kind not in self._answers:
                self._answers[kind] = self._render(kind, page)
            return self._answers[kind]

    def _render(self, kind: str, page: StatusPage) -> bytes:
        if kind == "html":
            return self.env.get_template("status/status.html").render(page=page).encode()
        if kind == "json":
            return json.dumps(page.to_dict(), indent=1).encode()
        return feed.render(page)


def mount(app: FastAPI, web: WebState) -> None:
    """Add the status page's routes to the agent's app."""
    answers = Rendered(Builder(web), _environment())

    @app.get("/status", response_class=HTMLResponse)
    def status_page() -> HTMLResponse:
        return HTMLResponse(answers.get("html"), headers=HEADERS)

    @app.get("/status.json")
    def status_json() -> Response:
        return Response(answers.get("json"), media_type="application/json", headers=HEADERS)

    @app.get("/status.atom")
    def status_atom() -> Response:
        return Response(answers.get("atom"), media_type="application/atom+xml", headers=HEADERS)
