"""tls: when each https endpoint's certificate expires (http endpoints have none: skipped)."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime
from urllib.parse import urlsplit

from hammersmith.cloud.connection import SERVICES
from hammersmith.detect.probes import ProbeContext, ProbeResult, Step, probe, timed


def certificate_expiry(url: str, timeout: float = 10.0) -> float:
    """The notAfter of the certificate the https `url` presents, as Unix time.

    The chain is not verified: an expired or self-signed certificate must still be *read*, so
    that its date is exported (verification is the clients' business, and the reads probe's).
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"not an https URL: {url}")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ValueError(f"{url}: no certificate presented")
    return _not_after(der)


def _not_after(der: bytes) -> float:
    """notAfter of a DER certificate; `ssl` decodes only verified peers, so `cryptography` reads it."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.not_valid_after_utc.astimezone(UTC).timestamp()


@probe("tls")
def tls(ctx: ProbeContext) -> ProbeResult:
    """Read the certificate of each https endpoint in the catalog, and its expiry."""
    endpoints = {SERVICES[st]: url for st, url in ctx.catalog().items()}
    auth_url = (ctx.connection.conn.config.get_auth_args() or {}).get("auth_url")
    if auth_url:
        endpoints["keystone"] = auth_url.rstrip("/")
    https = {service: url for service, url in endpoints.items() if urlsplit(url).scheme == "https"}
    if not https:
        return ProbeResult("tls", "skipped", reason="no https endpoint in the catalog")
    steps: list[Step] = []
    expiry: dict[tuple[str, str], float] = {}
    for service, url in sorted(https.items()):
        step, not_after = timed(service, lambda u=url: certificate_expiry(u, ctx.site.probes.timeout_seconds))
        steps.append(step)
        if not_after is not None:
            expiry[(service, url)] = not_after
            if not_after < datetime.now(UTC).timestamp():
                steps[-1] = Step(service, False, step.seconds, f"certificate expired {iso(not_after)}")
    status = "passed" if all(s.ok for s in steps) else "failed"
    return ProbeResult("tls", status, tuple(steps), tls_expiry=expiry)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
