"""The snapshot: one consistent, timestamped, paginated read of a site, per cycle.

Every list is a bulk call (`limit`/`marker`, following the service's own "next" link) and
nothing is fetched per object. A service that fails is marked incomplete -- its lists are
None, never [] -- so later code can refuse to act on partial data.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import Any, Literal

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc

from hammersmith.cloud import replication
from hammersmith.cloud.connection import SERVICES, SiteConnection
from hammersmith.errors import CloudError

#: explicit, not negotiated: fields and semantics stay the same whatever the server's maximum
#: (1.78 = Yoga: has retired, lessee, owner, allocations; Chameleon-era sites all serve it)
IRONIC_MICROVERSION = "1.78"
#: 2.53: server and service IDs are UUIDs; servers show `OS-EXT-SRV-ATTR:hypervisor_hostname` (the Ironic node) to
#: whoever may see extended attributes, and aggregates list their hosts (Queens and later)
NOVA_MICROVERSION = "2.53"


@dataclass(frozen=True)
class Listing:
    """One bulk list call (and its pages)."""

    name: str
    service_type: str
    path: str
    key: str
    params: tuple[tuple[str, Any], ...] = ()
    microversion: str | None = None
    paginated: bool = True
    marker_field: str = "id"
    #: read for one hammer's sake: where it fails (a plugin not enabled, a policy not widened) its data is None and
    #: that hammer waits, rather than the whole service counting as unread
    optional: bool = False


LISTINGS: tuple[Listing, ...] = (
    Listing("nodes", "baremetal", "/nodes/detail", "nodes", (), IRONIC_MICROVERSION, True, "uuid"),
    Listing("ports", "baremetal", "/ports/detail", "ports", (), IRONIC_MICROVERSION, True, "uuid"),
    Listing("allocations", "baremetal", "/allocations", "allocations", (), IRONIC_MICROVERSION, True, "uuid"),
    Listing("servers", "compute", "/servers/detail", "servers", (("all_tenants", 1),), NOVA_MICROVERSION),
    Listing("aggregates", "compute", "/os-aggregates", "aggregates", (), NOVA_MICROVERSION, False, optional=True),
    Listing("network_ports", "network", "/ports", "ports"),
    Listing("networks", "network", "/networks", "networks", optional=True),
    Listing("floating_ips", "network", "/floatingips", "floatingips"),
    # 1.14: providers show their parent and root (a child is never an orphan of its own)
    Listing("resource_providers", "placement", "/resource_providers", "resource_providers", (), "1.14", False),
    Listing("blazar_hosts", "reservation", "/os-hosts", "hosts", paginated=False),
    Listing("host_allocations", "reservation", "/os-hosts/allocations", "allocations", paginated=False),
    Listing("leases", "reservation", "/leases", "leases", (("all_tenants", True),), paginated=False),
    Listing("blazar_floatingips", "reservation", "/floatingips", "floatingips", paginated=False, optional=True),
    # names, owners and states for the project and user IDs other listings carry; Keystone does not page (it may
    # truncate at its list_limit)
    Listing("projects", "identity", "/projects", "projects", paginated=False),
    Listing("users", "identity", "/users", "users", paginated=False, optional=True),
)


class LoginFailed(CloudError):
    """Keystone refused or did not answer: nothing at the site could be read this cycle."""


class ListingFailed(Exception):
    """A list call did not complete; the message says why in an operator's words."""


@dataclass
class ServiceRead:
    status: Literal["ok", "incomplete", "absent"] = "ok"
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Snapshot:
    site: str
    started_at: datetime
    finished_at: datetime
    data: dict[str, list[dict[str, Any]] | None]
    services: dict[str, ServiceRead]
    requests: dict[str, int] = field(default_factory=dict)
    #: Ironic's own clock (the node listing's `Date` header): grace and ages are judged on it, not the agent's
    server_time: datetime | None = None
    #: optional listings that could not be read, and why
    unread: dict[str, str] = field(default_factory=dict)

    @property
    def now(self) -> datetime:
        return self.server_time or self.started_at

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def incomplete(self) -> list[str]:
        return sorted(s for s, r in self.services.items() if r.status == "incomplete")

    def offers(self, service: str) -> bool:
        """The site has the service (in its catalog, or configured), whether or not it could be read."""
        return self.services.get(service, ServiceRead("absent")).status != "absent"

    def complete(self, *services: str) -> bool:
        """True when every named service was read in full (no names: every service the site has)."""
        if not services:
            return not self.incomplete
        return all(self.services.get(s, ServiceRead("absent")).status == "ok" for s in services)

    @property
    def nodes(self) -> list[dict[str, Any]]:
        return self.data.get("nodes") or []

    @cached_property
    def project_names(self) -> dict[str, str]:
        """Project ID -> name, from Keystone's listing ({} on a noauth site or when it was not read)."""
        return {p["id"]: p["name"] for p in self.data.get("projects") or [] if p.get("name")}

    @cached_property
    def ports_by_node(self) -> dict[str, list[dict[str, Any]]]:
        by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for port in self.data.get("ports") or []:
            by_node[port["node_uuid"]].append(port)
        return dict(by_node)

    def summary(self) -> dict[str, Any]:
        nodes = self.nodes
        return {
            "site": self.site,
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration, 3),
            "complete": not self.incomplete,
            "services": {
                s: {"status": r.status, "error": r.error, "seconds": round(r.seconds, 3)}
                for s, r in sorted(self.services.items())
            },
            "requests": dict(sorted(self.requests.items())),
            "counts": {name: len(items) for name, items in self.data.items() if items is not None},
            "nodes": {
                "total": len(nodes),
                "provision_state": dict(Counter(n["provision_state"] for n in nodes).most_common()),
                "maintenance": dict(Counter("yes" if n["maintenance"] else "no" for n in nodes).most_common()),
                "resource_class": dict(Counter(n.get("resource_class") or "(none)" for n in nodes).most_common()),
            },
        }


def server_date(response: Any) -> datetime | None:
    """The service's clock from its `Date` header (RFC 7231), or None."""
    try:
        return parsedate_to_datetime(response.headers["Date"]).astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        return None


def _fetch(
    client: ks_adapter.Adapter, listing: Listing, page_size: int, dates: dict[str, datetime]
) -> list[dict[str, Any]]:
    """All items of one listing, page by page; the first page's `Date` goes into `dates`."""
    items: list[dict[str, Any]] = []
    params = dict(listing.params)
    while True:
        if listing.paginated:
            params["limit"] = page_size
        try:
            response = client.get(listing.path, params=params, microversion=listing.microversion, raise_exc=False)
        except (ks_exc.ConnectTimeout, ks_exc.RequestTimeout):  # keystoneauth reports read timeouts as either
            raise ListingFailed(f"{listing.name}: no answer within the timeout (timeout_seconds)") from None
        except ks_exc.ConnectFailure as exc:
            raise ListingFailed(f"{listing.name}: cannot connect ({_reason(exc)})") from None
        except ks_exc.ClientException as exc:
            raise ListingFailed(f"{listing.name}: {exc}") from None
        if response.status_code >= 300:
            raise ListingFailed(
                f"{listing.name}: HTTP {response.status_code} from {listing.path}: {fault_text(response)}"
            )
        try:
            body = response.json()
            page = body[listing.key]
        except (ValueError, KeyError, TypeError):
            raise ListingFailed(f"{listing.name}: answer is not the expected JSON list '{listing.key}'") from None
        if listing.name not in dates and (date := server_date(response)):
            dates[listing.name] = date
        items.extend(page)
        more = body.get("next") or any(link.get("rel") == "next" for link in body.get(f"{listing.key}_links", []))
        if not (listing.paginated and more and page):
            return items
        params["marker"] = page[-1][listing.marker_field]


def _reason(exc: Exception) -> str:
    text = str(exc)
    return "connection refused" if "Connection refused" in text else text.splitlines()[0][:200]


def fault_text(response: Any) -> str:
    """The service's own error text, whatever envelope it uses."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason
    if isinstance(body, dict) and "error_message" in body:  # Ironic wraps JSON in a string
        inner = body["error_message"]
        try:
            return json.loads(inner).get("faultstring", inner)[:300]
        except (ValueError, AttributeError):
            return str(inner)[:300]
    return str(body)[:300]


def _replicas(site: SiteConnection) -> tuple[list[dict[str, Any]], ServiceRead]:
    """The site's database replicas (config `replicas`), one status query each; an unreadable one is listed with
    its error (that is a finding too), never dropped."""
    t0 = time.perf_counter()
    found: list[dict[str, Any]] = []
    for replica in site.site.replicas:
        try:
            found.append({"name": replica.name, **asdict(replication.status(replica, site.site.timeout_seconds))})
        except CloudError as exc:
            found.append({"name": replica.name, "error": str(exc)})
    return found, ServiceRead(seconds=time.perf_counter() - t0)


def take(site: SiteConnection) -> Snapshot:
    """Read every listing the site's catalog offers, concurrently, after one fresh login."""
    started = datetime.now(UTC)
    before = site.requests.snapshot()
    try:
        site.login()
    except ks_exc.ClientException as exc:
        raise LoginFailed(
            f"site {site.name!r}: login failed: {_reason(exc)}",
            hint="check the credentials and auth_url in clouds.yaml",
        ) from None
    clients = {st: site.adapter(st) for st in {listing.service_type for listing in LISTINGS}}
    if clients["baremetal"] is None:
        raise CloudError(
            f"site {site.name!r}: the catalog has no baremetal (Ironic) endpoint",
            hint="hammersmith needs Ironic; set baremetal_endpoint_override in clouds.yaml if it is not in the catalog",
        )
    services: dict[str, ServiceRead] = {
        SERVICES[st]: ServiceRead() if c else ServiceRead("absent") for st, c in clients.items()
    }
    wanted = [listing for listing in LISTINGS if clients[listing.service_type] is not None]

    def run(listing: Listing) -> tuple[Listing, list[dict[str, Any]] | None, str | None, float]:
        t0 = time.perf_counter()
        try:
            return (
                listing,
                _fetch(clients[listing.service_type], listing, site.site.page_size, dates),
                None,
                time.perf_counter() - t0,
            )
        except ListingFailed as exc:
            return listing, None, str(exc), time.perf_counter() - t0

    data: dict[str, list[dict[str, Any]] | None] = {}
    dates: dict[str, datetime] = {}
    unread: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
        for listing, items, error, seconds in pool.map(run, wanted):
            read = services[SERVICES[listing.service_type]]
            read.seconds = max(read.seconds, seconds)
            data[listing.name] = items
            if error and listing.optional:
                unread[listing.name] = error
            elif error:
                read.status = "incomplete"
                read.error = f"{read.error}; {error}" if read.error else error
    for listing in wanted:  # a partly read service is wholly unknown: None, never a partial list (optional or not)
        if services[SERVICES[listing.service_type]].status == "incomplete":
            data[listing.name] = None
    if site.site.replicas:
        data["replicas"], services["mysql"] = _replicas(site)
    requests = {s: n - before.get(s, 0) for s, n in site.requests.snapshot().items() if n > before.get(s, 0)}
    return Snapshot(site.name, started, datetime.now(UTC), data, services, requests, dates.get("nodes"), unread)
