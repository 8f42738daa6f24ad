"""The probe registry: black-box checks of a site as its users see it, one module per probe.

A probe logs in, reads or connects like a client would and returns its steps with their
timings, so a slow Keystone or an expiring certificate shows up before users notice. Sites add
their own through the `hammersmith.probes` entry point group, exactly as built-ins register.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Literal

from keystoneauth1 import exceptions as ks_exc

from hammersmith.cloud.connection import SERVICES, SiteConnection
from hammersmith.config import Site
from hammersmith.plugins import load_plugins

BUILTIN = ("token", "catalog", "reads", "tls")
Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class Step:
    """One timed call inside a probe."""

    name: str
    ok: bool
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "seconds": round(self.seconds, 4), "error": self.error}


@dataclass(frozen=True)
class ProbeResult:
    """A probe's outcome: failed when any step failed; skipped (with a reason) when it does not apply."""

    probe: str
    status: Status
    steps: tuple[Step, ...] = ()
    reason: str | None = None
    #: (service, endpoint) -> certificate notAfter (Unix time), from the tls probe
    tls_expiry: dict[tuple[str, str], float] = field(default_factory=dict)
    #: what the probe found, for the report (e.g. the catalog's services)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 4),
            "steps": [s.to_dict() for s in self.steps],
            "tls_expiry": [{"service": s, "endpoint": e, "not_after": t} for (s, e), t in self.tls_expiry.items()],
            **({"info": self.info} if self.info else {}),
        }


@dataclass
class ProbeContext:
    """What a probe may use: the site's connection (its own, with the probe timeout) and its config."""

    name: str
    site: Site
    connection: SiteConnection

    @property
    def auth_type(self) -> str:
        return str(self.connection.conn.config.config.get("auth_type") or "password")

    def catalog(self) -> dict[str, str]:
        """service type -> endpoint URL, for each service hammersmith reads that the catalog (or an override) has."""
        found = {}
        for service_type in SERVICES:
            if service_type == "identity":
                continue
            client = self.connection.adapter(service_type)
            if client is not None:
                found[service_type] = (client.get_endpoint() or "").rstrip("/")
        return found


ProbeFunc = Callable[[ProbeContext], ProbeResult]


@dataclass(frozen=True)
class Probe:
    name: str
    func: ProbeFunc
    doc: str


PROBES: dict[str, Probe] = {}


def probe(name: str) -> Callable[[ProbeFunc], ProbeFunc]:
    """Register a probe under `name`."""

    def register(func: ProbeFunc) -> ProbeFunc:
        if name in PROBES and PROBES[name].func is not func:
            raise ValueError(f"probe {name!r} registered twice")
        PROBES[name] = Probe(name, func, (func.__doc__ or "").strip().splitlines()[0])
        return func

    return register


def load() -> dict[str, Probe]:
    """Every probe, built-ins first in BUILTIN's order (the order they run and are reported in)."""
    load_plugins(__name__, BUILTIN, "hammersmith.probes")
    return {name: PROBES[name] for name in BUILTIN} | PROBES


def reason(exc: BaseException) -> str:
    """One line naming what went wrong, never a credential (keystoneauth messages carry URLs, not bodies)."""
    if isinstance(exc, ks_exc.ConnectFailure):
        return f"connection failed: {str(exc).splitlines()[0][:200]}"
    if isinstance(exc, TimeoutError) and str(exc):  # ours: already says what timed out
        return str(exc).splitlines()[0][:300]
    if isinstance(exc, (ks_exc.ConnectTimeout, ks_exc.RequestTimeout, TimeoutError)):
        return f"timed out: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
    if isinstance(exc, ks_exc.HttpError):
        return f"HTTP {exc.http_status}: {(exc.message or '').splitlines()[0][:200] if exc.message else ''}".rstrip()
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HttpFailure(Exception):
    """A service answered with an HTTP error (the SDK's proxies return those instead of raising)."""


def checked(response: Any) -> Any:
    """The response if it is a success, else HttpFailure naming the status, the URL and the service's own error."""
    if response.status_code < 400:
        return response
    from hammersmith.cloud.snapshot import fault_text

    raise HttpFailure(
        f"HTTP {response.status_code} from {response.request.method} {response.url}: {fault_text(response)}"
    )


def timed(name: str, call: Callable[[], Any]) -> tuple[Step, Any]:
    """Run one call as a step: its wall time, and its error (as a one-line reason) instead of raising."""
    started = time.perf_counter()
    try:
        value = call()
    except Exception as exc:
        return Step(name, False, time.perf_counter() - started, reason(exc)), None
    return Step(name, True, time.perf_counter() - started), value


def result(name: str, steps: list[Step], **extra: Any) -> ProbeResult:
    return ProbeResult(name, "passed" if all(s.ok for s in steps) else "failed", tuple(steps), **extra)


def probe_connection(name: str, site: Site) -> SiteConnection:
    """A connection of the probes' own, with the probe timeout per request (never the snapshot's session)."""
    return SiteConnection(name, site.model_copy(update={"timeout_seconds": site.probes.timeout_seconds}))


def run(name: str, site: Site, only: list[str] | None = None) -> list[ProbeResult]:
    """Every probe (or `only` these) against one site, each bounded by the probe timeout (a failure if exceeded)."""
    probes = load()
    wanted = [probes[n] for n in (only or list(probes))]
    timeout = site.probes.timeout_seconds
    connection = probe_connection(name, site)
    ctx = ProbeContext(name, site, connection)
    results = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"probe-{name}")
    try:
        for p in wanted:
            started = time.perf_counter()
            future = pool.submit(_guarded, p, ctx)
            # every step of a probe has the timeout per request; the probe as a whole gets a few of them
            try:
                results.append(future.result(timeout=timeout * 4))
            except FutureTimeout:
                step = Step("run", False, time.perf_counter() - started, f"probe timed out after {timeout * 4:.0f} s")
                results.append(ProbeResult(p.name, "failed", (step,)))
                pool.shutdown(wait=False)
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"probe-{name}")
    finally:
        pool.shutdown(wait=False)
        connection.close()
    return results


def _guarded(p: Probe, ctx: ProbeContext) -> ProbeResult:
    """A probe that raises (a bug or an unexpected answer) is a failed probe, never a crashed agent."""
    started = time.perf_counter()
    try:
        return p.func(ctx)
    except Exception as exc:
        return ProbeResult(p.name, "failed", (Step("run", False, time.perf_counter() - started, reason(exc)),))
