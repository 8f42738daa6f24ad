"""The agent's FastAPI app and the uvicorn server that runs it beside the sweep loop."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST

from hammersmith import __version__
from hammersmith.config import Settings
from hammersmith.errors import HammersmithError
from hammersmith.quantify.exporter import Exporter
from hammersmith.react.incidents import IncidentWorker
from hammersmith.web import runbooks, webhook


def create_app(
    exporter: Exporter, *, settings: Settings | None = None, worker: IncidentWorker | None = None
) -> FastAPI:
    """/metrics and /healthz always; with settings and an incident worker (the agent), the Alertmanager webhook."""
    app = FastAPI(title="hammersmith agent", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        # on the event loop, not the thread pool: a cached render is a copy, and every hand-over
        # between threads waits for the GIL while a cycle is busy in another thread
        return Response(exporter.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(runbooks.router)
    if settings is not None and worker is not None:
        app.include_router(webhook.router(settings.http, worker.processor.store, worker.submit))
    return app


class Server:
    """uvicorn in a background thread, on a socket bound before start() returns (so a busy port fails fast)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
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
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

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
