"""The operators' dashboard (login required): sites overview, node pages, ledger, incidents, maintenance, toil."""

from __future__ import annotations

from fastapi import FastAPI

from hammersmith.web.state import WebState


def mount(app: FastAPI, web: WebState) -> None:
    """Add the dashboard's routes to the agent's app."""
