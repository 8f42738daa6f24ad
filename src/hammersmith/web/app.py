"""The agent's FastAPI app and the uvicorn server that runs it beside the sweep loop."""

from __future__ import annotations

import base64
import binascii
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import anyio
import bcrypt
import uvicorn
from fastapi import FastAPI, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Receive, Scope, Send

from hammersmith import __version__
from hammersmith.config import Http, Settings
from hammersmith.errors import HammersmithError
from hammersmith.quantify.exporter import Exporter
from hammersmith.react.incidents import IncidentWorker
from hammersmith.web import dashboard, limits, runbooks, status, webhook
from hammersmith.web.state import WebState

# /metrics requests answered at once; more get 503 at once, so a scrape flood cannot hold every connection
METRICS_IN_FLIGHT = 32
# liveness checks and Alertmanager (which has its own bearer token) never need a password
OPEN_PATHS = frozenset({"/healthz", webhook.PATH})
# the dashboard (its own login and sessions) and the public status page never ask for basic auth; basic auth
# stays on /metrics and the runbooks, for Prometheus and scripts
SESSION_PATHS = frozenset({"/", "/login", "/logout"})
SESSION_PREFIXES = ("/status", "/static/", "/nodes", "/ledger", "/incidents", "/maintenance", "/toil", "/ui/")


def basic_auth_exempt(path: str) -> bool:
    return path in OPEN_PATHS or path in SESSION_PATHS or path.startswith(SESSION_PREFIXES)


# bcrypt checks at once, and waiting: a password-guessing flood costs two cores at most, then 401 at once
BCRYPT_THREADS = 2
BCRYPT_WAITING = 16
VERIFIED_CACHE = 1024
#: vendored CSS and JavaScript (each with its licence): the pages work with no internet access
STATIC = Path(__file__).parent / "static"


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    head = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a hash that looks like bcrypt but is not one (checked at start only by its shape)
        return False


class MetricsBudget:
    """At most `limit` /metrics answers in flight; the webhook and /healthz never wait behind a scrape flood."""

    def __init__(self, app: ASGIApp, limit: int = METRICS_IN_FLIGHT) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0  # one event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/metrics":
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            limits.CLOSED["metrics_busy"] += 1
            return await _answer(send, 503, b"too many /metrics requests at once\n", [(b"retry-after", b"1")])
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class BasicAuth:
    """Basic auth with bcrypt hashes (web config `basic_auth_users`) on every path but the exempt ones.

    A bcrypt check costs about 100 ms or more by design; a scrape every 15 s must not pay it each time, so
    credentials that passed once are remembered by their SHA-256 (in memory only) until the agent stops.
    """

    def __init__(self, app: ASGIApp, users: Mapping[str, bytes]) -> None:
        self.app = app
        self.users = dict(users)
        self.decoy = next(iter(self.users.values()))  # an unknown user costs a check too: no user enumeration
        self.verified: set[bytes] = set()
        self.limiter = anyio.CapacityLimiter(BCRYPT_THREADS)
        self.waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or basic_auth_exempt(scope["path"]) or await self._allowed(scope):
            return await self.app(scope, receive, send)
        await _answer(send, 401, b"unauthorized\n", [(b"www-authenticate", b'Basic realm="hammersmith"')])

    async def _allowed(self, scope: Scope) -> bool:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
            name = user.decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        key = hashlib.sha256(user + b"\0" + password).digest()
        if key in self.verified:
            return True
        # bcrypt reads 72 bytes at most (and bcrypt 5 refuses more); a flood beyond the waiting room is refused
        if not sep or len(password) > 72 or self.waiting >= BCRYPT_WAITING:
            return False
        self.waiting += 1
        try:
            hashed = self.users.get(name, self.decoy)
            ok = await anyio.to_thread.run_sync(_checkpw, password, hashed, limiter=self.limiter)
        finally:
            self.waiting -= 1
        if ok and name in self.users:
            if len(self.verified) >= VERIFIED_CACHE:
                self.verified.clear()
            self.verified.add(key)
            return True
        return False


def create_app(
    exporter: Exporter,
    *,
    settings: Settings | None = None,
    worker: IncidentWorker | None = None,
    users: Mapping[str, bytes] | None = None,
    web: WebState | None = None,
) -> FastAPI:
    """/metrics and /healthz always; with settings and an incident worker (the agent), the Alertmanager webhook;
    with web (the agent's store and last snapshots), the dashboard and the public status page; with users (web
    config `basic_auth_users`), basic auth on everything but /healthz, the webhook, the dashboard and status."""
    app = FastAPI(title="hammersmith agent", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        # on the event loop, not the thread pool: a cached render is a copy, and every hand-over
        # between threads waits for the GIL while a cycle is busy in another thread
        return Response(exporter.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(runbooks.router)
    if web is not None:
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
        status.mount(app, web)
        dashboard.mount(app, web)
    if settings is not None and worker is not None:
        app.include_router(webhook.router(settings.http, worker.processor.store, worker.submit))
    if users:
        app.add_middleware(BasicAuth, users=users)
    app.add_middleware(MetricsBudget)  # the outermost: a flood on /metrics is refused before any password check
    return app


class Server:
    """uvicorn in a background thread, on a socket bound before start() returns (so a busy port fails fast).

    Connections go through `limits`: counted from accept, read timeouts, at most `http.max_connections`
    (within the file descriptor limit); `tls` (from the web config) makes it HTTPS.
    """

    def __init__(
        self, app: FastAPI, host: str, port: int, *, http: Http | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        http = http or Http()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # inherited by accepted connections: uvicorn writes headers and body apart, and with Nagle the body
        # waited for the client's delayed ACK (40 ms per POST answer or thread-pool endpoint; measured 44 -> 0.3 ms)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise HammersmithError(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                hint="another agent or exporter may be running; set http.listen in the config or pass --listen",
            ) from None
        self.host, self.port = host, self.sock.getsockname()[1]
        self.tls = tls
        self.guard = limits.Guard(
            limits.fd_budget(http.max_connections), http.header_timeout_seconds, http.body_timeout_seconds
        )
        config = uvicorn.Config(
            app,
            http=limits.protocol_factory(self.guard, tls),  # type: ignore[arg-type]
            loop="asyncio",  # TLSGate is asyncio's own TLS protocol
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise HammersmithError(f"the HTTP server on {self.url} did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
