"""POST /api/v1/alertmanager: authenticate, bound, validate and store a delivery, answer, process later.

Nothing here waits for OpenStack: the delivery is stored (so it survives a crash) and handed to the
incident worker's queue. Answers: 200 stored (listing the alerts set aside by the schema, each with its
fields); 401 no or wrong token (no detail, nothing to probe with); 408 body not received within
http.body_timeout_seconds; 413 body over http.max_body_bytes (refused before it is all read); 422 malformed
JSON or envelope, naming the field; 503 the database would not store it (Alertmanager retries).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from hammersmith.config import Http
from hammersmith.react.incidents import STATS, Envelope, check, schema_errors
from hammersmith.store import Store

log = logging.getLogger("hammersmith.webhook")
PATH = "/api/v1/alertmanager"
#: set-aside alerts listed in a 200 answer
ANSWER_SET_ASIDE = 100


class _TooLarge(Exception):
    pass


def authorized(header: str | None, token: str | None) -> bool:
    """Bearer token, compared in constant time; no configured token refuses everyone."""
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body, or _TooLarge as soon as Content-Length or the bytes streamed so far pass `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _answer(code: int, content: Any = None, headers: dict[str, str] | None = None) -> Response:
    STATS.request(code)
    if content is None:
        return Response(status_code=code, headers=headers)
    return JSONResponse(content, status_code=code, headers=headers)


def router(http: Http, store: Store, submit: Callable[[int], None]) -> APIRouter:
    """The webhook route, bound to the agent's store and its incident worker's queue."""
    api = APIRouter()
    # one insert at a time: SQLite has one writer, and its busy handler makes waiting writers sleep
    # (1, 2, 5, 10 ... ms), which a Python lock does not
    one_writer = threading.Lock()

    def record(body: dict[str, Any], set_aside: list[dict[str, Any]]) -> int:
        with one_writer:
            return store.record_delivery(body, set_aside=set_aside)

    @api.post(PATH)
    async def alertmanager(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), http.webhook_token):
            return _answer(401, headers={"WWW-Authenticate": "Bearer"})
        try:
            async with asyncio.timeout(http.body_timeout_seconds):
                raw = await read_bounded(request, http.max_body_bytes)
        except _TooLarge:
            return _answer(413, {"detail": f"body larger than {http.max_body_bytes} bytes (http.max_body_bytes)"})
        except TimeoutError:
            detail = f"body not received within {http.body_timeout_seconds:g} s (http.body_timeout_seconds)"
            return _answer(408, {"detail": detail}, headers={"Connection": "close"})
        except ClientDisconnect:  # the client's business, not an error of ours: nothing to answer
            log.debug("webhook client %s went away before its body was read", request.client)
            return Response(status_code=400)
        try:
            body = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return _answer(422, {"detail": f"malformed JSON: {exc}"})
        try:
            envelope = Envelope.model_validate(body)
        except ValidationError as exc:
            errors = schema_errors(exc)
            return _answer(422, {"detail": "not an Alertmanager webhook payload (version 4)", "errors": errors})
        checked = check(envelope, http.max_alerts_per_delivery)
        try:  # the sanitized body (what the schema accepted), never the raw one
            delivery = await run_in_threadpool(record, checked.body, checked.set_aside)
        except Exception:
            log.exception("webhook delivery could not be stored")
            return _answer(503, {"detail": "could not store the delivery; retry"})
        submit(delivery)
        aside = [{"alert": a["index"], "errors": a["errors"]} for a in checked.set_aside]
        if aside:
            log.warning("webhook delivery %s: %d alert(s) set aside by the schema", delivery, len(aside))
        answer = {"status": "accepted", "delivery": delivery, "alerts": checked.accepted}
        # the first ones with why (the rest: `hammersmith incidents --dead`), so an answer stays small
        return _answer(200, {**answer, "set_aside": aside[:ANSWER_SET_ASIDE], "set_aside_total": len(aside)})

    return api
