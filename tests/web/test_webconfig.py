"""The web config file (TLS and basic auth, the exporters' format): what it accepts and the line of each problem."""

from __future__ import annotations

import ssl
from pathlib import Path

import bcrypt
import pytest

from hammersmith.errors import ConfigError
from hammersmith.web import webconfig
from tests.web.tls import Pki, make_pki

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def problems(text: str, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        webconfig.parse(text, "web.yml", base)
    return [str(p) for p in caught.value.problems]


def test_tls_and_users_relative_to_the_file(pki: Pki) -> None:
    text = f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prom: '{HASH}'\n"
    path = pki.ca.parent / "web.yml"
    path.write_text(text)
    web = webconfig.load(path)
    assert web.tls is not None and web.tls.minimum_version is ssl.TLSVersion.TLSv1_2
    assert web.tls.verify_mode is ssl.CERT_NONE
    assert web.users == {"prom": HASH.encode()}


def test_an_empty_file_is_plain_http_without_users(tmp_path: Path) -> None:
    assert webconfig.parse("", "web.yml", tmp_path) == webconfig.WebConfig()


def test_client_certificates_verified_against_the_ca(pki: Pki) -> None:
    text = (
        f"tls_server_config:\n  cert_file: {pki.cert}\n  key_file: {pki.key}\n  min_version: TLS13\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
    )
    web = webconfig.parse(text, "web.yml", Path("/"))
    assert web.tls is not None
    assert web.tls.verify_mode is ssl.CERT_REQUIRED and web.tls.minimum_version is ssl.TLSVersion.TLSv1_3


def test_every_schema_problem_with_its_line(tmp_path: Path) -> None:
    text = (
        "tls_server_config:\n"
        "  cert_file: a.crt\n"
        "  key_file: a.key\n"
        "  min_version: TLS10\n"
        "http_server_config:\n"
        "  headers: {X-Frame-Options: deny}\n"
        "basic_auth_users:\n"
        "  prom: plaintext\n"
    )
    found = problems(text, tmp_path)
    assert found[0].startswith("web.yml:4: 'tls_server_config.min_version'")
    assert found[1].startswith("web.yml:5: unknown or unsupported key 'http_server_config'")
    assert found[2].startswith("web.yml:7: 'basic_auth_users': user 'prom': the password must be a bcrypt hash")
    assert "plaintext" not in "".join(found)  # a password typed in clear is not echoed to the log


def test_client_auth_that_cannot_be_verified_is_refused(tmp_path: Path) -> None:
    text = "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n"
    assert "web.yml:4: 'tls_server_config.client_auth_type': RequireAnyClientCert" in problems(text, tmp_path)[0]
    text = "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n"
    assert problems(text, tmp_path) == [
        "web.yml:1: 'tls_server_config': client_auth_type VerifyClientCertIfGiven needs client_ca_file"
    ]


def test_missing_key_file_named_at_its_line(pki: Pki) -> None:
    text = f"tls_server_config:\n  cert_file: {pki.cert}\n  key_file: nowhere.key\n"
    (found,) = problems(text, pki.ca.parent)
    assert found.startswith("web.yml:3: 'tls_server_config.key_file': cannot read ")
    assert found.endswith("nowhere.key: No such file or directory")


def test_a_key_that_does_not_match_is_refused_at_start(pki: Pki) -> None:
    text = f"tls_server_config:\n  cert_file: {pki.cert}\n  key_file: {pki.client_key}\n"
    (found,) = problems(text, pki.ca.parent)
    assert found.startswith("web.yml:2: 'tls_server_config': ") and "not a PEM certificate and its key" in found


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    assert problems("tls_server_config: [\n", tmp_path)[0].startswith("web.yml:2: not valid YAML")
    with pytest.raises(ConfigError, match="file not found"):
        webconfig.load(tmp_path / "absent.yml")
