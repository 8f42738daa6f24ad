"""Probes against real services: the Keystone tier (password auth), Keystone stopped and back, the noauth
tier, and a real TLS server with a certificate made here."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hammersmith import config
from hammersmith.config import Site
from hammersmith.detect import probes
from hammersmith.detect.probes import ProbeResult
from hammersmith.detect.probes.tls import certificate_expiry
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.testbed import lifecycle
from tests.conftest import Testbed, hammersmith


def site_of(bed: Testbed, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Site]:
    """The testbed's site as its hammersmith.yaml describes it; clouds.yaml found in the working directory."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(bed.workdir / "clouds.yaml"))
    return config.load(bed.workdir / "hammersmith.yaml").site(None)


def by_name(results: list[ProbeResult]) -> dict[str, ProbeResult]:
    return {r.probe: r for r in results}


def test_every_probe_passes_on_the_keystone_tier_with_step_timings(
    keystone_testbed: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, site = site_of(keystone_testbed, monkeypatch)
    results = by_name(probes.run(name, site))
    assert list(results) == ["token", "catalog", "reads", "tls"]
    assert {p: r.status for p, r in results.items()} == {
        "token": "passed",
        "catalog": "passed",
        "reads": "passed",
        "tls": "skipped",  # every endpoint of the testbed is http
    }
    assert results["tls"].reason == "no https endpoint in the catalog"
    assert [s.name for s in results["token"].steps] == ["issue"]
    assert [s.name for s in results["reads"].steps] == ["ironic", "neutron"]
    assert set(results["catalog"].info["services"]) == {"ironic", "neutron"}
    assert results["catalog"].info["missing"] == ["blazar", "nova", "placement"]
    for r in results.values():
        assert all(s.ok and 0 < s.seconds < site.probes.timeout_seconds and s.error is None for s in r.steps)

    telemetry = Telemetry([name])
    telemetry.record_probes(name, list(results.values()))
    families = {f.name: f for f in text_string_to_metric_families(Exporter(telemetry).render().decode())}
    success = {s.labels["probe"]: s.value for s in families["hammersmith_probe_success"].samples}
    assert success == {"token": 1.0, "catalog": 1.0, "reads": 1.0}  # a skipped probe has no series
    steps = {(s.labels["probe"], s.labels["step"]) for s in families["hammersmith_probe_duration_seconds"].samples}
    assert steps == {("token", "issue"), ("catalog", "endpoints"), ("reads", "ironic"), ("reads", "neutron")}

    cli = hammersmith("probe", "--json", cwd=keystone_testbed.workdir)
    assert cli.returncode == 0, cli.stderr
    assert [r["status"] for r in json.loads(cli.stdout)["results"]] == ["passed", "passed", "passed", "skipped"]
    table = hammersmith("probe", cwd=keystone_testbed.workdir)
    assert table.returncode == 0 and "issue" in table.stdout and "neutron" in table.stdout


def test_token_probe_fails_while_keystone_is_stopped_and_passes_after(
    keystone_testbed: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, site = site_of(keystone_testbed, monkeypatch)
    password = keystone_testbed.state.passwords["hammersmith"]
    lifecycle.stop_service(keystone_testbed.workdir, "keystone")
    try:
        (token,) = probes.run(name, site, only=["token"])
        cli = hammersmith("probe", cwd=keystone_testbed.workdir)
    finally:
        lifecycle.start_service(keystone_testbed.workdir, "keystone")
    assert token.status == "failed"
    (step,) = token.steps
    assert not step.ok and step.error and step.error.startswith("connection failed")
    assert password not in step.error
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "failed" in cli.stdout and password not in cli.stdout + cli.stderr

    (token,) = probes.run(name, site, only=["token"])
    assert token.status == "passed"


def test_noauth_tier_skips_the_token_probe_with_a_reason(testbed: Testbed, monkeypatch: pytest.MonkeyPatch) -> None:
    name, site = site_of(testbed, monkeypatch)
    results = by_name(probes.run(name, site))
    assert results["token"].status == "skipped"
    assert results["token"].reason == "auth_type none: the site issues no tokens"
    assert results["catalog"].status == "passed" and "ironic" in results["catalog"].info["services"]
    assert results["reads"].status == "passed" and [s.name for s in results["reads"].steps][0] == "ironic"
    cli = hammersmith("probe", "--json", cwd=testbed.workdir)
    assert cli.returncode == 0, cli.stderr


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, datetime]]:
    """A real https server on 127.0.0.1 with a self-signed certificate made here; (url, its notAfter)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    not_after = (datetime.now(UTC) + timedelta(days=9)).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/v3", not_after
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_tls_probe_reads_the_certificate_expiry(https_server: tuple[str, datetime]) -> None:
    url, not_after = https_server
    assert certificate_expiry(url, timeout=5) == not_after.timestamp()

    telemetry = Telemetry(["lab"])
    result = ProbeResult(
        "tls", "passed", (probes.Step("keystone", True, 0.01),), tls_expiry={("keystone", url): not_after.timestamp()}
    )
    telemetry.record_probes("lab", [result])
    (family,) = (
        f
        for f in text_string_to_metric_families(Exporter(telemetry).render().decode())
        if f.name == "hammersmith_tls_certificate_expiry_timestamp_seconds"
    )
    (sample,) = family.samples
    assert sample.labels == {"site": "lab", "service": "keystone", "endpoint": url}
    assert sample.value == not_after.timestamp()


def test_tls_refuses_http_urls_and_reports_a_closed_port() -> None:
    with pytest.raises(ValueError, match="not an https URL"):
        certificate_expiry("http://127.0.0.1:1/")
    from hammersmith.testbed.ironic import free_port

    with pytest.raises(OSError):
        certificate_expiry(f"https://127.0.0.1:{free_port()}/", timeout=2)
