"""Site configuration as versioned code: one YAML file, validated with line-precise errors.

Policy (thresholds, exemptions, hammer modes) lives here rather than in code, so a site's
behaviour is reviewed like any other change to the repository that holds this file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hammersmith.errors import ConfigError, ConfigProblem

DEFAULT_CONFIG = "hammersmith.yaml"
ENV_CONFIG = "HAMMERSMITH_CONFIG"
SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: the service an Apprise URL names; the only part of one that may be logged
APPRISE_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
TOKEN = re.compile(r"[\x21-\x7e]+")
#: a config file is a few KB; anything near this is not one (PyYAML in pure Python reads a few hundred KB a second)
MAX_FILE_BYTES = 1_048_576
#: values in the document once aliases are expanded: a real config has a few thousand
MAX_NODES = 100_000
#: nesting levels; the deepest key of the schema is 5 levels down (sites.<name>.policy.hammers.<hammer>)
MAX_DEPTH = 32
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"

HammerMode = Literal["off", "observe", "apply"]


class _Strict(BaseModel):
    """Unknown keys are errors. Every duration has an upper bound too: past it a value is a typo, and 10**10 s
    validated once, then overflowed threading.Event.wait after the agent's first cycle."""

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
    window_minutes: int = Field(60, ge=1, le=10_080)


class Retention(_Strict):
    """How long the store keeps what it writes each sweep; the ledger must outlive the budget window."""

    findings_days: float = Field(30, gt=0, le=3650, description="findings and sent-notification records")
    ledger_days: float = Field(400, gt=0, le=3650, description="finished ledger rows (the audit trail)")
    deliveries_days: float = Field(30, gt=0, le=3650, description="processed and dead-lettered webhook deliveries")
    incidents_days: float = Field(400, gt=0, le=3650, description="resolved incidents and their timelines")


class Policy(_Strict):
    """What counts as wrong at a site, and what hammersmith may do about it."""

    stuck_after_minutes: int = Field(
        60, ge=1, le=10_080, description="a node in a transient state longer than this is stuck"
    )
    exempt_nodes: list[str] = Field(
        default_factory=list, description="node names or UUIDs never acted on (listed as left alone)"
    )
    exempt_resource_classes: list[str] = Field(default_factory=list)
    hammers: dict[str, HammerMode] = Field(default_factory=dict, description="hammer name -> mode; unlisted: observe")
    grace_minutes: float = Field(
        10, ge=0, le=1440, description="objects changed more recently than this are not touched"
    )
    budget: Budget = Field(default_factory=Budget)
    rate: RateLimit = Field(default_factory=RateLimit)
    breaker: Breaker = Field(default_factory=Breaker)
    retention: Retention = Field(default_factory=Retention)
    lock_ttl_seconds: int = Field(600, ge=10, le=86_400, description="a node lock's lease; long actions renew it")
    verify_seconds: float = Field(
        120, ge=0, le=3600, description="how long an action waits for its node to settle before verifying the fix"
    )
    verify_timeout_minutes: float = Field(
        120,
        gt=0,
        le=10_080,
        description="a fix not verifiable by then (the node never settled) is recorded unverified",
    )
    maintenance_window_hours: float = Field(
        24, gt=0, le=8760, description="hammersmith's own maintenance older than this"
    )
    lease_buffer_minutes: float = Field(
        60, ge=0, le=10_080, description="a node whose Blazar lease starts within this long is not touched"
    )
    inspect_after_days: float = Field(30, gt=0, le=3650)
    inspect_per_sweep: int = Field(2, ge=0)
    maintenance_lease_pattern: str = Field(
        "(?i)maint",
        min_length=1,
        max_length=256,
        description="a Blazar lease whose name this regex matches (anywhere) is operators' maintenance",
    )
    idle_lease_hours: float = Field(
        6, gt=0, le=8760, description="a lease active this long with no instance on its nodes is idle: owner told"
    )
    idle_lease_grace_hours: float = Field(
        3, gt=0, le=8760, description="an idle lease still idle this long after its owner was told is ended"
    )
    lease_reminder_hours: float = Field(
        24, gt=0, le=8760, description="a lease's owner is told once, this long before the lease starts"
    )
    floating_ip_grace_hours: float = Field(
        72, ge=0, le=87_600, description="an unassociated floating IP older than this (and unchanged) is reaped"
    )
    keep_tags: list[str] = Field(
        default_factory=lambda: ["keep"], description="a floating IP with one of these Neutron tags is never reaped"
    )
    provisioning_networks: list[str] = Field(
        default_factory=list,
        description="Neutron networks (names or IDs) Ironic provisions and cleans on: conflicting-macs looks there",
    )
    excluded_projects: list[str] = Field(
        default_factory=list,
        description="project names or IDs whose leases and floating IPs the reapers leave alone (staff, maintenance)",
    )

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

    @field_validator("maintenance_lease_pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

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

    interval_seconds: int = Field(60, ge=5, le=86_400, description="seconds between probe runs by the agent")
    timeout_seconds: float = Field(10.0, gt=0, le=120)


class Smoke(_Strict):
    """Smoke scenarios the agent runs: a cheap set often, an expensive set (deploys a node) rarely."""

    cheap_interval_seconds: int = Field(
        3600, ge=0, le=2_592_000, description="0: never scheduled (still runnable by hand)"
    )
    expensive_interval_seconds: int = Field(86400, ge=0, le=2_592_000, description="0: never scheduled")
    resource_class: str | None = Field(None, description="the expensive set deploys an available node of this class")
    image_source: str = Field("http://127.0.0.1/smoke.img", description="instance_info.image_source for the deploy")
    timeout_seconds: float = Field(1800, gt=0, le=21_600, description="per scenario")
    reports_dir: Path = Field(Path("smoke-reports"), description="CTRF and JUnit files; relative to state_dir")


class Notices(_Strict):
    """Notices to users (lease owners): sent once each through Apprise, to the e-mail Keystone has for them."""

    url: str | None = Field(
        None,
        description="Apprise URL with an {email} placeholder for the recipient, e.g. "
        "mailtos://user:pass@smtp.example.org?from=ops@example.org&to={email} (secret); unset: nothing is sent",
    )
    timezone: str = Field("UTC", description="IANA time zone that times in notices are also shown in")
    operators: str | None = Field(None, description="who users may reply to, named in every notice")

    @field_validator("url")
    @classmethod
    def _has_recipient(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if "{email}" not in url:
            raise ValueError("the URL needs an {email} placeholder where each recipient's address goes")
        return _apprise_url(url)

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, zone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {zone!r} (e.g. America/Chicago, Europe/Paris, UTC)") from None
        return zone


class MaintenanceSettings(_Strict):
    """`hammersmith maint`: how long a maintenance lasts by default and what returning a node to service runs."""

    default_hours: float = Field(
        24, gt=0, le=8760, description="a maintenance started without --until lasts this long (its Blazar lease too)"
    )
    inspect_on_return: bool = Field(False, description="inspect the node before it returns to service")
    clean_on_return: bool = Field(
        False, description="on the way back: manageable, so that provide runs automated cleaning"
    )
    smoke_on_return: bool = Field(True, description="the cheap check that the returned node works (validate, power)")


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _iana_zone(zone: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown IANA time zone (e.g. America/Chicago, Europe/Paris, UTC)") from None
    return zone


class WeeklySpan(_Strict):
    """A recurring weekly span of local time when a part-time site's hardware goes away; `end` before `start`
    means the span runs over midnight into the next day."""

    days: list[str] = Field(min_length=1, description="the days the span starts on: mon, tue, wed, thu, fri, sat, sun")
    start: str = Field(description="local time the hardware goes away, HH:MM (24 h)")
    end: str = Field(description="local time it is back, HH:MM; at or before `start`: the next day")

    @field_validator("days")
    @classmethod
    def _weekdays(cls, days: list[str]) -> list[str]:
        """Full names are what people write; three letters are what the code compares."""
        full = {name: name[:3] for name in WEEKDAY_NAMES}
        short = []
        for day in days:
            name = str(day).strip().lower()
            if name not in WEEKDAYS and name not in full:
                raise ValueError(f"unknown day {_clip(day)}: use {', '.join(WEEKDAYS)}")
            short.append(full.get(name, name))
        return short

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not CLOCK.match(str(value)):
            raise ValueError("not a time of day: use HH:MM, 00:00 to 23:59")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> WeeklySpan:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start}: a span needs a length (use 00:00 to 23:59)")
        return self


class Schedule(_Strict):
    """When a part-time site (or some of its nodes) is offline: weekly spans or an iCalendar file's events.

    Before each window its nodes stop being reservable (a Blazar maintenance lease across the window); after it
    they return to service the way `hammersmith maint end` returns them."""

    name: str = Field(min_length=1, max_length=64, description="named in maintenance reasons, silences and metrics")
    nodes: list[str] = Field(
        default_factory=list, description="node names, UUIDs or resource classes it covers; empty: the whole site"
    )
    timezone: str = Field("UTC", description="IANA time zone of the weekly spans (and of floating iCalendar times)")
    offline: list[WeeklySpan] = Field(default_factory=list, description="weekly spans when the hardware is away")
    ical: str | None = Field(
        None, description="absolute path or http(s) URL of an iCalendar file whose events are the offline windows"
    )
    lead_hours: float = Field(
        24, ge=0, le=8760, description="this long before a window its nodes stop being reservable across it"
    )

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, zone: str) -> str:
        return _iana_zone(zone)

    @field_validator("ical")
    @classmethod
    def _ical_source(cls, source: str | None) -> str | None:
        """A relative path would depend on where the agent was started; a URL is fetched every cycle."""
        if source is None or urlsplit(source).scheme in ("http", "https") or Path(source).is_absolute():
            return source
        raise ValueError("must be an absolute path or an http(s):// URL")

    @model_validator(mode="after")
    def _one_source(self) -> Schedule:
        if bool(self.offline) == (self.ical is not None):
            raise ValueError(
                f"schedule {self.name!r} needs exactly one of `offline` (weekly spans) or `ical` (a calendar)"
            )
        return self


class Replica(_Strict):
    """A MariaDB/MySQL replica the mysql-replication hammer watches and, for a transient cause, restarts."""

    name: str = Field(min_length=1, max_length=64, description="the replica's name in findings and the ledger")
    host: str = Field("127.0.0.1")
    port: int = Field(3306, ge=1, le=65_535)
    user: str = Field(min_length=1, description="least privilege: REPLICATION SLAVE ADMIN and SLAVE MONITOR only")
    password_file: Path = Field(description="file holding the account's password (a secret: never in this file)")
    instance: str | None = Field(
        None, description="the mysqld exporter's `instance` label for this replica (alerts find the replica by it)"
    )


def _apprise_url(url: str) -> str:
    """Apprise picks the service by the scheme; without one nothing is sent, and the logs could only show the URL."""
    if not APPRISE_SCHEME.match(url):
        raise ValueError(
            "an Apprise URL starts with its service, e.g. slack://, mailtos:// or json:// (not shown: secret)"
        )
    return url


AppriseUrl = Annotated[str, AfterValidator(_apprise_url)]


class Site(_Strict):
    """One OpenStack deployment, reached through one clouds.yaml entry."""

    cloud: str = Field(min_length=1, description="name of the entry in clouds.yaml")
    region: str | None = None
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    page_size: int = Field(1000, ge=1, le=1000, description="items per list request (Ironic caps pages at 1000)")
    policy: Policy = Field(default_factory=Policy)
    notify: list[AppriseUrl] = Field(default_factory=list, description="Apprise URLs (secrets: never logged)")
    sweep_interval_seconds: int = Field(300, ge=5, le=86_400)
    alerts: dict[str, str] = Field(
        default_factory=dict,
        description="Alertmanager alert name -> hammer it triggers for the alert's node (or subject)",
    )
    probes: Probes = Field(default_factory=Probes)
    smoke: Smoke = Field(default_factory=Smoke)
    notices: Notices = Field(default_factory=Notices)
    replicas: list[Replica] = Field(default_factory=list)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    schedules: list[Schedule] = Field(
        default_factory=list, description="part-time availability: windows when the site's hardware is offline"
    )
    alertmanager_url: str | None = Field(
        None, description="Alertmanager base URL for silences during maintenance; none: no silences"
    )

    @field_validator("schedules")
    @classmethod
    def _schedule_names(cls, schedules: list[Schedule]) -> list[Schedule]:
        """Maintenance reasons and the store's memory of a window name the schedule: two alike would be one."""
        names = [s.name for s in schedules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"schedule name(s) used twice: {', '.join(twice)}")
        return schedules

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
        None,
        min_length=16,
        max_length=1024,
        description="bearer token Alertmanager sends (secret); unset: the webhook refuses all",
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

    @field_validator("webhook_token")
    @classmethod
    def _token_can_match(cls, token: str | None) -> str | None:
        """An Authorization header carries printable ASCII only, trimmed: any other token could never match."""
        if token is not None and not TOKEN.fullmatch(token):
            raise ValueError("must be printable ASCII without spaces or control characters (not shown: secret)")
        return token

    @field_validator("public_url")
    @classmethod
    def _publishable(cls, url: str | None) -> str | None:
        """It is written into every alert's runbook_url and every notification: no credentials in it."""
        if url is None:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not hold user:password@ (it is published in every runbook_url; not shown)")
        return url

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
                    f"site name {_clip(name)} must be lowercase letters, digits, '-' or '_' (it becomes a metric label)"
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


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that hammersmith will not expand: too deep, too big, cyclic, or keyed by a non-name."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: its composer recurses per level, and a value it cannot read is pinned to its
    line instead of escaping as a bare ValueError (`!!int x`, an integer of 5,000 digits)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        self._nodes += 1
        try:
            if self._nodes > MAX_NODES:  # refused early: PyYAML composes some 60,000 values a second
                raise _Refused(None, None, f"more than {MAX_NODES:,} values", self.peek_event().start_mark)
            if self._depth > MAX_DEPTH:
                raise _Refused(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, AttributeError, OverflowError):  # the message could echo a secret value
            kind = node.tag.rpartition(":")[2]
            raise _Refused(None, None, f"cannot read this value as {kind}", node.start_mark) from None


class _Walk:
    """Every key path of a composed document and its 1-based line, aliases expanded within a budget.

    An alias is a reference, so a 1 KB file can name billions of values (and pydantic would visit each) or
    contain itself; counting expanded nodes, and refusing a collection inside itself, bounds all that."""

    def __init__(self) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        self.duplicates: dict[int, tuple[tuple[Any, ...], int]] = {}  # line -> (path, first line), once per line
        self._nodes = 0
        self._open: set[int] = set()

    def node(self, node: yaml.Node, path: tuple[Any, ...], depth: int) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            self._count(node, depth)
        elif isinstance(node, yaml.MappingNode):
            with self._inside(node, depth):
                self._mapping(node, path, depth, {})
        else:
            with self._inside(node, depth):
                for index, item in enumerate(node.value):
                    self.node(item, path + (index,), depth + 1)

    def _count(self, node: yaml.Node, depth: int) -> None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(
                None,
                None,
                f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)",
                node.start_mark,
            )
        if depth > MAX_DEPTH:
            raise _Refused(
                None, None, f"nested deeper than {MAX_DEPTH} levels once aliases are expanded", node.start_mark
            )

    @contextmanager
    def _inside(self, node: yaml.Node, depth: int) -> Iterator[None]:
        """Walk a collection, which must not be inside itself: an alias to an enclosing one would never end."""
        self._count(node, depth)
        if id(node) in self._open:
            raise _Refused(None, None, "an alias inside this collection refers back to it (a cycle)", node.start_mark)
        self._open.add(id(node))
        try:
            yield
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: tuple[Any, ...], depth: int, seen: dict[str, int]) -> None:
        """Keys written here first; then merged (`<<`) ones not already set, pointing at the anchor that holds them."""
        inherited = set(seen)  # set by the mapping this one is merged into: overriding them is the point
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merges.extend(value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node])
                continue
            key = _key(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                if key not in inherited:  # YAML keeps the last one silently; a second site block is a mistake
                    self.duplicates.setdefault(line, (path + (key,), seen[key]))
                continue
            seen[key] = line
            self.node(value_node, path + (key,), depth + 1)
            self.lines[path + (key,)] = line
        for source in merges:
            if isinstance(source, yaml.MappingNode):  # anything else: the constructor refuses it, with its line
                with self._inside(source, depth + 1):
                    self._mapping(source, path, depth + 1, seen)


def _key(node: yaml.Node) -> str:
    """A mapping key as the schema needs it: a name. A list, a mapping, a number or a boolean is refused."""
    if not isinstance(node, yaml.ScalarNode):
        kind = "list" if isinstance(node, yaml.SequenceNode) else "mapping"
        raise _Refused(None, None, f"a key must be a name, not a {kind}", node.start_mark)
    if node.tag != STR_TAG:
        kind = node.tag.rpartition(":")[2]
        raise _Refused(None, None, f"key {_clip(node.value)} is read as {kind}, not a name: quote it", node.start_mark)
    return str(node.value)


def _document(text: str, filename: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The YAML document's data and the line of every key path; ConfigError if it isn't YAML we will read."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks every character at once
        root = loader.get_single_node()
        walk = _Walk()
        if root is not None:
            walk.node(root, (), 0)
        if walk.duplicates:
            raise ConfigError(
                [
                    ConfigProblem(filename, line, f"duplicate key '{_dotted(path)}' (first at line {first})")
                    for line, (path, first) in sorted(walk.duplicates.items())
                ]
            )
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem if isinstance(exc, _Refused) else f"not valid YAML: {exc.problem or exc}"
        raise ConfigError([ConfigProblem(filename, line, str(problem))]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            [ConfigProblem(filename, line, f"not valid YAML: character #x{exc.character:04x}: {exc.reason}")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, walk.lines


def _clip(value: Any, limit: int = 60) -> str:
    """repr of a value, cut so a hostile file cannot flood the terminal through an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) if len(str(p)) <= 60 else str(p)[:57] + "..." for p in path)


#: pydantic error types that mean "expected a section": a string given instead may be the section, secrets and all
SECTION_ERRORS = frozenset({"model_type", "model_attributes_type", "dict_type"})
#: keys whose values are secrets (tokens, passwords in URLs): never echoed, whatever is wrong with them
SECRET_KEYS = frozenset({"notify", "public_url", "store_url", "webhook_token"})


def _describe(error: dict[str, Any]) -> str:
    loc = _dotted(tuple(error["loc"]))
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc}' (check the spelling; docs/config.md lists every key)"
    if kind == "missing":
        return f"missing required key '{loc}'"
    value = error.get("input")
    hidden = SECRET_KEYS & set(map(str, error["loc"])) or kind in SECTION_ERRORS or isinstance(value, (dict, list))
    shown = "" if hidden else f" (got {_clip(value)})"
    return f"'{loc}': {error['msg']}{shown}" if loc else f"{error['msg']}{shown}"


def line_map(text: str, filename: str = DEFAULT_CONFIG) -> dict[tuple[Any, ...], int]:
    """Map each key path of the YAML document to its line; ConfigError if it isn't YAML."""
    return _document(text, filename)[1]


def parse(text: str, filename: str = DEFAULT_CONFIG) -> Settings:
    """Validate YAML text; raise ConfigError listing every problem with its line."""
    data, lines = _document(text, filename)
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
        with file.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)  # /dev/zero or a runaway generator must not fill memory
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
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            [ConfigProblem(str(file), 0, f"larger than {MAX_FILE_BYTES // 1024} KiB: not a configuration file")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigProblem(str(file), line, "not UTF-8 text")]) from None
    settings = parse(text, str(file))
    http = settings.http
    if http.web_config_file is not None:
        http = http.model_copy(update={"web_config_file": _beside(file, http.web_config_file)})
    return settings.model_copy(update={"state_dir": _beside(file, settings.state_dir), "http": http})


def _beside(file: Path, path: Path) -> Path:
    """A path from the config file, relative to that file."""
    path = path.expanduser()
    return path if path.is_absolute() else (file.parent / path).resolve()
