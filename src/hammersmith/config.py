"""Site configuration as versioned code: one YAML file, validated with line-precise errors.

Policy (thresholds, exemptions, hammer modes) lives here rather than in code, so a site's
behaviour is reviewed like any other change to the repository that holds this file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hammersmith.errors import ConfigError, ConfigProblem

DEFAULT_CONFIG = "hammersmith.yaml"
ENV_CONFIG = "HAMMERSMITH_CONFIG"
SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

HammerMode = Literal["off", "observe", "apply"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """How often one hammer may act on one node before it gives up and escalates."""

    attempts: int = Field(3, ge=1, le=100)
    window_days: float = Field(7, gt=0, le=365)


class RateLimit(_Strict):
    """Actions one hammer may take, per sweep and per hour."""

    per_sweep: int = Field(5, ge=0)
    per_hour: int = Field(20, ge=0)


class Breaker(_Strict):
    """The fleet circuit breaker: too many planned actions means something bigger is wrong."""

    max_percent: float = Field(20, gt=0, le=100, description="of the site's nodes, in one window")
    max_actions: int = Field(10, ge=1, description="absolute cap in one window")
    window_minutes: int = Field(60, ge=1)


class Retention(_Strict):
    """How long the store keeps what it writes each sweep; the ledger must outlive the budget window."""

    findings_days: float = Field(30, gt=0, description="findings and sent-notification records")
    ledger_days: float = Field(400, gt=0, description="finished ledger rows (the audit trail)")
    deliveries_days: float = Field(30, gt=0, description="processed and dead-lettered webhook deliveries")
    incidents_days: float = Field(400, gt=0, description="resolved incidents and their timelines")


class Policy(_Strict):
    """What counts as wrong at a site, and what hammersmith may do about it."""

    stuck_after_minutes: int = Field(60, ge=1, description="a node in a transient state longer than this is stuck")
    exempt_nodes: list[str] = Field(
        default_factory=list, description="node names or UUIDs never acted on (listed as left alone)"
    )
    exempt_resource_classes: list[str] = Field(default_factory=list)
    hammers: dict[str, HammerMode] = Field(default_factory=dict, description="hammer name -> mode; unlisted: observe")
    grace_minutes: float = Field(10, ge=0, description="objects changed more recently than this are not touched")
    budget: Budget = Field(default_factory=Budget)
    rate: RateLimit = Field(default_factory=RateLimit)
    breaker: Breaker = Field(default_factory=Breaker)
    retention: Retention = Field(default_factory=Retention)
    lock_ttl_seconds: int = Field(600, ge=10, description="a node lock's lease; long actions renew it")
    verify_seconds: float = Field(
        120, ge=0, description="how long an action waits for its node to settle before verifying the fix"
    )
    verify_timeout_minutes: float = Field(
        120, gt=0, description="a fix not verifiable by then (the node never settled) is recorded unverified"
    )
    maintenance_window_hours: float = Field(24, gt=0, description="hammersmith's own maintenance older than this")
    inspect_after_days: float = Field(30, gt=0)
    inspect_per_sweep: int = Field(2, ge=0)

    @field_validator("hammers", mode="before")
    @classmethod
    def _yaml_off(cls, hammers: Any) -> Any:
        """YAML 1.1 reads a bare `off` as false; an operator who wrote it meant the mode."""
        if isinstance(hammers, dict):
            return {name: "off" if mode is False else mode for name, mode in hammers.items()}
        return hammers

    @field_validator("hammers")
    @classmethod
    def _known_hammers(cls, hammers: dict[str, HammerMode]) -> dict[str, HammerMode]:
        from hammersmith.react.hammers import load

        known = load()
        unknown = sorted(set(hammers) - set(known))
        if unknown:
            raise ValueError(f"unknown hammer(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return hammers

    @model_validator(mode="after")
    def _ledger_outlives_budget(self) -> Policy:
        if self.retention.ledger_days < self.budget.window_days:
            raise ValueError(
                f"retention.ledger_days ({self.retention.ledger_days:g}) must be at least budget.window_days "
                f"({self.budget.window_days:g}): the budget counts ledger rows"
            )
        return self

    def mode(self, hammer: str) -> HammerMode:
        return self.hammers.get(hammer, "observe")


class Probes(_Strict):
    """Black-box checks as a user sees the site: token, catalog, one read per service, TLS expiry."""

    interval_seconds: int = Field(60, ge=5, description="seconds between probe runs by the agent")
    timeout_seconds: float = Field(10.0, gt=0, le=120)


class Smoke(_Strict):
    """Smoke scenarios the agent runs: a cheap set often, an expensive set (deploys a node) rarely."""

    cheap_interval_seconds: int = Field(3600, ge=0, description="0: never scheduled (still runnable by hand)")
    expensive_interval_seconds: int = Field(86400, ge=0, description="0: never scheduled")
    resource_class: str | None = Field(None, description="the expensive set deploys an available node of this class")
    image_source: str = Field("http://127.0.0.1/smoke.img", description="instance_info.image_source for the deploy")
    timeout_seconds: float = Field(1800, gt=0, description="per scenario")
    reports_dir: Path = Field(Path("smoke-reports"), description="CTRF and JUnit files; relative to state_dir")


class Site(_Strict):
    """One OpenStack deployment, reached through one clouds.yaml entry."""

    cloud: str = Field(min_length=1, description="name of the entry in clouds.yaml")
    region: str | None = None
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    page_size: int = Field(1000, ge=1, le=1000, description="items per list request (Ironic caps pages at 1000)")
    policy: Policy = Field(default_factory=Policy)
    notify: list[str] = Field(default_factory=list, description="Apprise URLs (secrets: never logged)")
    sweep_interval_seconds: int = Field(300, ge=5)
    alerts: dict[str, str] = Field(
        default_factory=dict, description="Alertmanager alert name -> hammer it triggers for the alert's node"
    )
    probes: Probes = Field(default_factory=Probes)
    smoke: Smoke = Field(default_factory=Smoke)

    @field_validator("alerts")
    @classmethod
    def _alert_hammers(cls, alerts: dict[str, str]) -> dict[str, str]:
        from hammersmith.react.hammers import load

        known = load()
        unknown = sorted({h for h in alerts.values() if h not in known})
        if unknown:
            raise ValueError(f"unknown hammer(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return alerts


class Http(_Strict):
    """The agent's own HTTP server (`hammersmith run`, `hammersmith exporter`): /metrics, runbooks, webhook."""

    listen: str = Field("127.0.0.1:9184", description="host:port (port 0: any free port, logged at start)")
    public_url: str | None = Field(
        None, description="how Prometheus, Alertmanager and people reach the agent; default http://<listen>"
    )
    webhook_token: str | None = Field(
        None, min_length=16, description="bearer token Alertmanager sends (secret); unset: the webhook refuses all"
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    web_config_file: Path | None = Field(
        None, description="TLS and basic auth, in the web config format of Prometheus exporters"
    )
    max_connections: int = Field(1000, ge=16, le=60_000, description="open connections at once, slow ones first out")
    header_timeout_seconds: float = Field(10, gt=0, le=300, description="a request's headers must arrive by then")
    body_timeout_seconds: float = Field(30, gt=0, le=600, description="a request's body must arrive by then")
    max_alerts_per_delivery: int = Field(1000, ge=1, le=100_000, description="alerts beyond are set aside")
    max_alert_series: int = Field(200, ge=1, le=10_000, description="alert names on /metrics; the rest: other")
    delivery_attempts: int = Field(8, ge=1, le=100, description="tries of a stored delivery before dead-letter")
    retry_max_seconds: float = Field(300, gt=0, le=3600, description="longest wait between two tries")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str) -> str:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:9184 (port 0: any free port)")
        return listen

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.listen}").rstrip("/")

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class Settings(_Strict):
    """The whole file."""

    state_dir: Path = Path(".hammersmith")
    store_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in state_dir")
    http: Http = Field(default_factory=Http)
    sites: dict[str, Site] = Field(min_length=1)

    @field_validator("sites")
    @classmethod
    def _site_names(cls, sites: dict[str, Site]) -> dict[str, Site]:
        for name in sites:
            if not SITE_NAME.match(name):
                raise ValueError(
                    f"site name {name!r} must be lowercase letters, digits, '-' or '_' (it becomes a metric label)"
                )
        return sites

    def site(self, name: str | None) -> tuple[str, Site]:
        """The named site, or the only one when no name is given."""
        if name is None:
            if len(self.sites) == 1:
                return next(iter(self.sites.items()))
            raise ConfigError(
                [
                    ConfigProblem(
                        "--site", 0, f"several sites configured ({', '.join(self.sites)}): pick one with --site"
                    )
                ]
            )
        if name not in self.sites:
            raise ConfigError([ConfigProblem("--site", 0, f"no site {name!r}; configured: {', '.join(self.sites)}")])
        return name, self.sites[name]

    @property
    def effective_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.state_dir / 'hammersmith.sqlite'}"


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--config`, else $HAMMERSMITH_CONFIG, else ./hammersmith.yaml."""
    return Path(explicit or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


def _line_map(
    node: yaml.Node,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    duplicates: list[tuple[tuple[Any, ...], int, int]],
) -> None:
    """Record the 1-based line of every key and item, so validation errors can point at it."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.value in seen:  # YAML keeps the last one silently; a second site block is a mistake
                duplicates.append((path + (key_node.value,), line, seen[key_node.value]))
                continue
            seen[key_node.value] = line
            _line_map(value_node, path + (key_node.value,), lines, duplicates)
            lines[path + (key_node.value,)] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), lines, duplicates)


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc}' (check the spelling; docs/config.md lists every key)"
    if kind == "missing":
        return f"missing required key '{loc}'"
    value = error.get("input")
    secret = {"notify", "store_url", "webhook_token"} & set(map(str, error["loc"]))  # tokens or passwords
    shown = "" if secret or isinstance(value, (dict, list)) else f" (got {value!r})"
    return f"'{loc}': {error['msg']}{shown}" if loc else f"{error['msg']}{shown}"


def line_map(text: str, filename: str = DEFAULT_CONFIG) -> dict[tuple[Any, ...], int]:
    """Map each key path of the YAML document to its line; ConfigError if it isn't YAML."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([ConfigProblem(filename, line, f"not valid YAML: {exc.problem or exc}")]) from None
    lines: dict[tuple[Any, ...], int] = {}
    duplicates: list[tuple[tuple[Any, ...], int, int]] = []
    if root is not None:
        _line_map(root, (), lines, duplicates)
    if duplicates:
        raise ConfigError(
            [
                ConfigProblem(filename, line, f"duplicate key '{'.'.join(map(str, path))}' (first at line {first})")
                for path, line, first in duplicates
            ]
        )
    return lines


def parse(text: str, filename: str = DEFAULT_CONFIG) -> Settings:
    """Validate YAML text; raise ConfigError listing every problem with its line."""
    lines = line_map(text, filename)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(filename, 1, "expected a mapping with at least a 'sites' key")])
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            while loc not in lines and loc:
                loc = loc[:-1]
            problems.append(ConfigProblem(filename, lines.get(loc, 1), _describe(error)))
        raise ConfigError(sorted(problems, key=lambda p: p.line)) from None


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the config file; relative paths in it are relative to the file."""
    file = config_path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise ConfigError(
            [
                ConfigProblem(
                    str(file),
                    0,
                    "file not found: pass --config, set $HAMMERSMITH_CONFIG, "
                    "or run 'hammersmith testbed up' to write one",
                )
            ]
        ) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(file), 0, f"cannot read: {exc.strerror}")]) from None
    settings = parse(text, str(file))
    http = settings.http
    if http.web_config_file is not None:
        http = http.model_copy(update={"web_config_file": _beside(file, http.web_config_file)})
    return settings.model_copy(update={"state_dir": _beside(file, settings.state_dir), "http": http})


def _beside(file: Path, path: Path) -> Path:
    """A path from the config file, relative to that file."""
    path = path.expanduser()
    return path if path.is_absolute() else (file.parent / path).resolve()
