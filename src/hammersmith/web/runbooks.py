"""GET /runbooks and /runbooks/<name>: the runbooks of the running version, where alerts' runbook_url points."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from hammersmith.react import runbooks

router = APIRouter()


def _not_found() -> Response:
    # the same answer for an unknown name and for a path trick: nothing to learn from probing
    return PlainTextResponse("Not Found", status_code=404)


@router.get("/runbooks", response_class=HTMLResponse)
def index() -> Response:
    return HTMLResponse(runbooks.render_index(runbooks.catalogue()))


@router.get("/runbooks/{name:path}", response_class=HTMLResponse)
def page(name: str) -> Response:
    # `:path` so that decoded slashes and dots land here, refused by the one name check, not by routing luck
    if not runbooks.SAFE_NAME.fullmatch(name) or name not in runbooks.catalogue():
        return _not_found()
    return HTMLResponse(runbooks.render_html(runbooks.catalogue()[name]))
