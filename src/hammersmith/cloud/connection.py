"""One openstacksdk connection per site: one login, reused, every HTTP request counted per service."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openstack
import openstack.config
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc
from openstack.connection import Connection

from hammersmith.config import Settings, Site, line_map
from hammersmith.errors import CloudError, ConfigProblem

#: service type in the catalog -> the project name operators use
SERVICES = {
    "identity": "keystone",
    "baremetal": "ironic",
    "compute": "nova",
    "network": "neutron",
    "placement": "placement",
    "reservation": "blazar",
}


#: called after every HTTP request: (service, code, seconds); code is the HTTP status, "timeout" or "connection"
RequestObserver = Callable[[str, str, float], None]


@dataclass
class RequestCounter:
    """Thread-safe count of HTTP requests, keyed by service name."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, service: str) -> None:
        with self._lock:
            self.counts[service] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


def service_adapter(conn: Connection, service_type: str, site: str = "") -> ks_adapter.Adapter | None:
    """A keystoneauth adapter for the service, or None when the catalog lacks it.

    Blazar has no SDK proxy, so every service is read the same way: through the
    SDK's own session and endpoint discovery (one login for all of them).
    """
    config = conn.config
    try:
        if not config.get_endpoint(service_type) and not conn.session.get_endpoint(
            service_type=service_type,
            interface=config.get_interface(service_type),
            region_name=config.get_region_name(service_type),
        ):
            return None
        client = config.get_session_client(service_type)
    except (ks_exc.EndpointNotFound, ks_exc.CatalogException):
        return None
    except ks_exc.ClientException as exc:
        raise CloudError(
            f"site {site!r}: cannot reach the identity service to find {service_type}: {exc}",
            hint="check auth_url in clouds.yaml and that Keystone is up",
        ) from None
    client.session = conn.session
    if service_type == "reservation":
        # Blazar's root lists v1 and an experimental v2 whose routes differ (no /os-hosts/allocations, no
        # all_tenants); discovery takes the highest, so v1 is pinned: the catalog's URL, ending in /v1
        endpoint = (
            config.get_endpoint(service_type)
            or conn.session.get_endpoint(
                service_type=service_type,
                interface=config.get_interface(service_type),
                region_name=config.get_region_name(service_type),
            )
            or ""
        ).rstrip("/")
        client.endpoint_override = endpoint if endpoint.endswith("/v1") else f"{endpoint}/v1"
    if service_type == "network":
        # the catalog's Neutron endpoint is discovered to .../v2.0, an endpoint override is taken as
        # written (usually without it): one base either way, so list paths are the same everywhere
        endpoint = (client.get_endpoint() or "").rstrip("/")
        client.endpoint_override = endpoint if endpoint.endswith("/v2.0") else f"{endpoint}/v2.0"
    return client


class SiteConnection:
    """A site's openstacksdk connection plus the adapters the snapshot reads through."""

    def __init__(self, name: str, site: Site, observer: RequestObserver | None = None) -> None:
        self.name = name
        self.site = site
        self.requests = RequestCounter()
        self.observer = observer
        try:
            self.conn = openstack.connect(
                cloud=site.cloud,
                region_name=site.region,
                api_timeout=site.timeout_seconds,
                # one retry when a kept-alive connection was closed by the server just as we reused it;
                # only connection failures are retried (list calls are GETs), never HTTP errors
                connect_retries=1,
            )
        except sdk_exc.ConfigException as exc:
            raise CloudError(
                f"site {name!r}: cloud {site.cloud!r} not usable: {exc}",
                hint="check the cloud name against clouds.yaml (searched: ./clouds.yaml, "
                "~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml, or $OS_CLIENT_CONFIG_FILE)",
            ) from None
        self._count_requests()

    def _count_requests(self) -> None:
        """Wrap the shared keystoneauth session so every request, auth included, is counted and timed."""
        session = self.conn.session
        original = session.request

        auth_url = (self.conn.config.get_auth_args() or {}).get("auth_url") or ""
        identity = urlsplit(auth_url).netloc

        def counted(url: str, method: str, *args: Any, **kwargs: Any) -> Any:
            service_type = (kwargs.get("endpoint_filter") or {}).get("service_type") or kwargs.get("service_type")
            if service_type is None and not kwargs.get("authenticated", True):
                # a login goes to Keystone; other unauthenticated GETs are keystoneauth's version discovery
                service_type = "identity" if identity and urlsplit(url).netloc == identity else "discovery"
            service = SERVICES.get(service_type or "", service_type or "other")
            self.requests.add(service)
            started, code = time.perf_counter(), "connection"
            try:
                response = original(url, method, *args, **kwargs)
                code = str(response.status_code)
                return response
            except ks_exc.HttpError as exc:
                code = str(exc.http_status)
                raise
            except (ks_exc.ConnectTimeout, ks_exc.RequestTimeout):
                code = "timeout"
                raise
            finally:
                if self.observer is not None:
                    self.observer(service, code, time.perf_counter() - started)

        session.request = counted  # type: ignore[method-assign]

    def adapter(self, service_type: str) -> ks_adapter.Adapter | None:
        """A keystoneauth adapter for the service, or None when the catalog lacks it."""
        return service_adapter(self.conn, service_type, self.name)

    def login(self) -> None:
        """A fresh token, once per cycle: Keystone's health is seen every cycle, never hidden by a cached token.

        Raises keystoneauth's errors; with `auth_type: none` there is nothing to do.
        """
        self.conn.session.invalidate()
        self.conn.session.get_token()

    def close(self) -> None:
        self.conn.close()


def cloud_problems(settings: Settings, path: Path) -> list[ConfigProblem]:
    """Sites whose cloud is missing from clouds.yaml, pinned to the line of their `cloud:` key."""
    lines = line_map(path.read_text(), str(path))
    problems = []
    for name, site in settings.sites.items():
        try:
            openstack.config.OpenStackConfig().get_one(cloud=site.cloud)
        except sdk_exc.ConfigException as exc:
            problems.append(
                ConfigProblem(
                    str(path),
                    lines.get(("sites", name, "cloud"), 1),
                    f"site {name!r}: cloud {site.cloud!r} is not in clouds.yaml ({exc})",
                )
            )
    return problems
