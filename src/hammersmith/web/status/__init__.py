"""The public status page (no login): per-site health, published incidents, planned maintenance, feeds."""

from __future__ import annotations

from fastapi import FastAPI

from hammersmith.web.state import WebState


def mount(app: FastAPI, web: WebState) -> None:
    """Add the status page's routes to the agent's app."""
