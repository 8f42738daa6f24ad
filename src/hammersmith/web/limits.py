"""Connection limits for the agent's HTTP server, below uvicorn's ASGI layer.

uvicorn has no read timeout for a request's headers or body, and `limit_concurrency` only counts a connection
once its headers have arrived; 400 clients that never finished their headers once held every file descriptor of
the agent (Alertmanager's POST was reset, SQLite could not open). Here every connection is counted from accept
(TLS handshake included), must send its headers within `http.header_timeout_seconds` and its body within
`http.body_timeout_seconds`, and at `http.max_connections` the oldest connection still waiting for a request is
closed to make room, so slow clients cannot lock out the webhook or a scrape.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
import weakref
from asyncio import sslproto
from collections import Counter
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

log = logging.getLogger("hammersmith.agent")

# file descriptors kept for everything but client connections: the store, OpenStack sessions, logs, threads
FD_HEADROOM = 256
# a full-limit warning at most this often, so a flood does not flood the log too
WARN_EVERY_SECONDS = 60.0
#: connections closed by the limits since the process started, by reason (for /metrics)
CLOSED: Counter[str] = Counter()
#: the guards of the servers running in this process
GUARDS: weakref.WeakSet[Guard] = weakref.WeakSet()


def fd_budget(max_connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE to fit `max_connections` plus headroom; how many connections fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    fits = max(16, soft - FD_HEADROOM)
    log.warning(
        "http.max_connections %d lowered to %d: the file descriptor limit is %d (raise it with ulimit -n or "
        "LimitNOFILE=), and %d stay free for the store and OpenStack",
        max_connections,
        fits,
        soft,
        FD_HEADROOM,
    )
    return fits


class Guard:
    """Every open connection of one server, oldest first; the cap and both read timeouts."""

    def __init__(self, max_connections: int, header_timeout: float, body_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.open: dict[GuardedProtocol, None] = {}  # insertion order is age
        self._warned = -WARN_EVERY_SECONDS
        GUARDS.add(self)

    def admit(self, conn: GuardedProtocol) -> bool:
        """Make room by closing the oldest connections still waiting for a request; False if all are busy."""
        while len(self.open) >= self.max_connections:
            self._warn_full()
            victim = next((c for c in self.open if c.waiting is not None), None)
            if victim is None:
                CLOSED["refused"] += 1
                return False
            CLOSED["evicted"] += 1
            victim.drop()
        self.open[conn] = None
        return True

    def release(self, conn: GuardedProtocol) -> None:
        self.open.pop(conn, None)

    def _warn_full(self) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_SECONDS:
            self._warned = now
            log.warning(
                "http.max_connections (%d) reached: closing the oldest connections that have not sent a request "
                "(so far %d closed, %d refused, %d timed out)",
                self.max_connections,
                CLOSED["evicted"],
                CLOSED["refused"],
                CLOSED["timed_out"],
            )


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers, then its body, then a stalled reply."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        guard: Guard,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard
        self.raw: asyncio.BaseTransport | None = None  # the socket's transport, under TLS too
        self.waiting: str | None = None  # "headers" or "body" while the client owes us a request
        self.deadline: asyncio.TimerHandle | None = None

    def opened(self, raw: asyncio.BaseTransport) -> bool:
        """Count the connection from accept; a connection that does not fit is closed at once."""
        self.raw = raw
        if not self.guard.admit(self):
            raw.abort()  # type: ignore[attr-defined]
            return False
        self._expect("headers", self.guard.header_timeout)
        return True

    def closed(self) -> None:
        self._cancel()
        self.guard.release(self)

    def drop(self) -> None:
        """Close now (evicted or late); connection_lost follows from the loop."""
        self.closed()
        if self.raw is not None:
            self.raw.abort()  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.raw is None and not self.opened(transport):
            return
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed()
        if self.transport is not None:  # None: refused before uvicorn saw it
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def pause_writing(self) -> None:
        # a client that stops reading its answer holds the connection and the handler: bound that as well
        super().pause_writing()
        self.deadline = self.deadline or self.loop.call_later(self.guard.body_timeout, self._late)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.waiting is None:
            self._cancel()

    def _follow(self) -> None:
        """Re-arm the deadline when the request moves on: h11 knows whether headers or body are still owed."""
        state = self.conn.their_state
        if state is h11.IDLE:
            self._expect("headers", self.guard.header_timeout)
        elif state is h11.SEND_BODY:
            self._expect("body", self.guard.body_timeout)
        else:  # a whole request is in (the app is answering) or the connection is closing
            self.waiting = None
            if not self.flow.write_paused:
                self._cancel()

    def _expect(self, what: str, seconds: float) -> None:
        if self.waiting != what:
            self._cancel()
            self.waiting = what
            self.deadline = self.loop.call_later(seconds, self._late)

    def _cancel(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _late(self) -> None:
        self.deadline = None
        CLOSED["timed_out"] += 1
        self.drop()


class TLSGate(sslproto.SSLProtocol):
    """TLS in front of a guarded connection, so the handshake already counts against the limits.

    The loop's own `create_server(ssl=...)` only calls the protocol once the handshake is done: a client that
    never finishes it would hold a descriptor for 60 s without being counted.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, app: GuardedProtocol, context: ssl.SSLContext) -> None:
        super().__init__(
            loop,
            app,
            context,
            None,
            server_side=True,
            ssl_handshake_timeout=app.guard.header_timeout,
            ssl_shutdown_timeout=5.0,
        )
        self.app = app
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.app.opened(transport):
            self.made = True
            super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.closed()
        if self.made:
            super().connection_lost(exc)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        # plain HTTP or a scanner on the TLS port is the client's mistake, not a traceback in the agent's log
        if isinstance(exc, (ssl.SSLError, OSError)):
            log.debug("TLS connection closed: %s", exc)
            if self._transport is not None:
                self._transport.abort()
            return
        super()._fatal_error(exc, message)


def protocol_factory(guard: Guard, tls: ssl.SSLContext | None) -> Callable[..., asyncio.Protocol]:
    """What uvicorn calls per accepted connection (`uvicorn.Config(http=...)`)."""

    def create(
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.Protocol:
        app = GuardedProtocol(config, server_state, app_state, _loop, guard=guard)
        return TLSGate(app.loop, app, tls) if tls is not None else app

    return create
