"""`http.web_config_file`: TLS and basic auth for the agent's port, in the web config format of Prometheus exporters.

The same file a node_exporter takes (https://github.com/prometheus/exporter-toolkit, docs/web-configuration.md),
so one procedure covers every exporter on a host. Read once at start; every problem is reported with its line,
and a certificate or key that cannot be used stops the agent at start instead of at the first scrape.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from hammersmith.config import MAX_FILE_BYTES, line_map
from hammersmith.errors import ConfigError, ConfigProblem

VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
VERIFY = {"VerifyClientCertIfGiven": ssl.CERT_OPTIONAL, "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
SUPPORTED = (
    "tls_server_config (cert_file, key_file, client_auth_type, client_ca_file, min_version, max_version) "
    "and basic_auth_users"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_auth_type: Literal[
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS12", "TLS13"] = "TLS13"

    @field_validator("client_auth_type")
    @classmethod
    def _verifiable(cls, kind: str) -> str:
        if kind in ("RequestClientCert", "RequireAnyClientCert"):
            raise ValueError(
                f"{kind} (a client certificate that is never verified) is not supported: "
                "use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
            )
        return kind

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        if self.client_auth_type in VERIFY and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        if self.client_ca_file is not None and self.client_auth_type not in VERIFY:
            raise ValueError("client_ca_file is set but client_auth_type does not verify client certificates")
        if VERSIONS[self.min_version] > VERSIONS[self.max_version]:
            raise ValueError(f"min_version {self.min_version} is above max_version {self.max_version}")
        return self


class WebConfigFile(_Strict):
    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = {}

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not (hashed.startswith(("$2a$", "$2b$", "$2y$")) and len(hashed) == 60):
                raise ValueError(
                    f"user {user!r}: the password must be a bcrypt hash ($2b$..., 60 characters), "
                    "e.g. the part after the colon of `htpasswd -nBC 10 USER`"
                )
        return users


@dataclass(frozen=True)
class WebConfig:
    """What the server needs: a ready TLS context (None: plain HTTP) and the users' bcrypt hashes."""

    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)


def load(path: Path) -> WebConfig:
    """Read and check the file; relative paths in it are relative to it, as in the exporters."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), 0, "file not found (http.web_config_file)")]) from None
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), 0, f"cannot read (http.web_config_file): {exc.strerror}")]
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([ConfigProblem(str(path), 0, "larger than 1 MiB: not a web config file")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(str(path), raw.count(b"\n", 0, exc.start) + 1, "not UTF-8 text")]) from None
    return parse(text, str(path), path.parent)


def parse(text: str, filename: str, base: Path) -> WebConfig:
    """Validate the YAML text and build the TLS context; ConfigError listing every problem with its line."""
    lines = line_map(text, filename)  # bounds the document (size, depth, aliases) before it is loaded
    data = yaml.safe_load(text)
    if data is None:
        data = {}  # an empty file: plain HTTP, no users, as in the exporters
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(filename, 1, f"expected a mapping with {SUPPORTED}")])
    try:
        model = WebConfigFile.model_validate(data)
    except ValidationError as exc:
        problems = [ConfigProblem(filename, _line(lines, tuple(e["loc"])), _describe(e)) for e in exc.errors()]
        raise ConfigError(sorted(problems, key=lambda p: p.line)) from None
    users = {user: hashed.encode() for user, hashed in model.basic_auth_users.items()}
    tls = model.tls_server_config
    return WebConfig(_context(tls, filename, base, lines) if tls else None, users)


def _context(tls: TLSServerConfig, filename: str, base: Path, lines: dict[tuple[Any, ...], int]) -> ssl.SSLContext:
    def problem(key: str, message: str) -> ConfigError:
        return ConfigError([ConfigProblem(filename, _line(lines, ("tls_server_config", key)), message)])

    def readable(key: str, path: Path) -> str:
        full = path.expanduser() if path.expanduser().is_absolute() else base / path.expanduser()
        try:
            full.read_bytes()
        except OSError as exc:
            raise problem(key, f"'tls_server_config.{key}': cannot read {full}: {exc.strerror}") from None
        return str(full)

    cert, key = readable("cert_file", tls.cert_file), readable("key_file", tls.key_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[tls.min_version]
    context.maximum_version = VERSIONS[tls.max_version]
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise problem(
            "cert_file", f"'tls_server_config': {cert} and {key} are not a PEM certificate and its key ({exc.reason})"
        ) from None
    if tls.client_ca_file is not None:
        ca = readable("client_ca_file", tls.client_ca_file)
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise problem(
                "client_ca_file", f"'tls_server_config.client_ca_file': no PEM certificate in {ca} ({exc.reason})"
            ) from None
        context.verify_mode = VERIFY[tls.client_auth_type]
    return context


def _line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    while loc not in lines and loc:
        loc = loc[:-1]
    return lines.get(loc, 1)


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown or unsupported key '{loc}' (hammersmith reads {SUPPORTED})"
    if kind == "missing":
        return f"missing required key '{loc}'"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    shown = "" if "basic_auth_users" in loc or isinstance(value, (dict, list)) else f" (got {repr(value)[:60]})"
    return f"'{loc}': {message}{shown}" if loc else f"{message}{shown}"
