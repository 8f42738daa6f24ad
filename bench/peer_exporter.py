"""Benchmark: Canonical's prometheus-openstack-exporter and `hammersmith exporter` side by side on the full tier.

    .venv/bin/python bench/peer_exporter.py [--nodes 4] [--scrapes 200] [--interval 10]

Brings up the testbed's full tier (`lifecycle.up` with Nova, and Blazar if the registry has it) in a
temp directory. Each exporter in turn (the peer first) gets its own set of counting proxies: one
loopback HTTP proxy per service (Keystone, Ironic, Nova, Neutron, Placement, Glance ...) that
forwards to the real service and rewrites the services' URLs in every answer (the token's catalog,
version documents, links) to its siblings, so every request the exporter makes passes one of them
and is counted by service, while the services' own traffic to each other does not. Both exporters
log in through the Keystone proxy as Keystone's admin, so both may see everything (`--account
hammersmith`: hammersmith with the testbed's least-privilege account instead). After its first
cycle /metrics is scraped `--scrapes` times (one keep-alive client, a fixed pause spanning about 2.5
cycles); then the bench waits until no request is in flight and stops it. Requests group into
cycles by the idle gap between them (longer than half the interval), which gives requests per cycle
per service and each cycle's wall time (first request sent to last answer) for both exporters with
the same yardstick.

The Debian package (0.1.4-2.2) is Python 2 code behind a python3 shebang (Debian only patched the
shebang): it dies on `import urlparse`, then on `cinderclient.v2` (gone from python3-cinderclient 9).
It runs here unmodified under PEER_SHIM, which maps the Python 2 modules it imports to their Python 3
names and cinderclient.v2 to v3, stubs the swift modules it imports with the Swift collectors off
(their eventlet deadlocked the process from its gatherer thread), makes `generate_latest` return
str (the handler concatenates it to '') and encodes what the handler writes, and binds its server to
127.0.0.1 (it binds every interface). Everything else, every OpenStack call included, is the
packaged code.

Prints tables, writes bench/results/peer_exporter.json; exits 1 if either exporter produced no
cycle, had a failed one, or a scrape failed (an incomplete hammersmith cycle is reported, with the services
it could not read: its requests were made all the same). Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml
from common import machine  # bench/ is the script directory
from exporter import SITE, Cycles, cycles, dumps, samples, start_exporter, stop_exporter, watched
from exporter import write_config as write_hammersmith_config
from rich.console import Console
from rich.table import Table

from hammersmith.testbed import lifecycle
from hammersmith.testbed.ironic import CLOUD_NAME, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "peer_exporter.json"
PEER = Path("/usr/bin/prometheus-openstack-exporter")
PEER_PACKAGE = "prometheus-openstack-exporter"
#: Python 3 names for the peer's Python 2 imports, and the str/bytes seams of its HTTP handler (see module doc)
PEER_SHIM = """
import http.server, runpy, socketserver, sys, types, urllib.parse
import cinderclient.v3.client, prometheus_client

class Handler(http.server.BaseHTTPRequestHandler):
    def setup(self):
        super().setup()
        raw = self.wfile

        class Writer:
            def write(self, data):
                return raw.write(data.encode() if isinstance(data, str) else data)

            def __getattr__(self, name):
                return getattr(raw, name)

        self.wfile = Writer()

class Server(http.server.HTTPServer):
    def __init__(self, address, handler):
        super().__init__(("127.0.0.1", address[1]), handler)

sys.modules["urlparse"] = urllib.parse
# python3-cinderclient 9 dropped the v2 API the peer imports (the tier has no Cinder; no call reaches it)
sys.modules["cinderclient.v2"] = cinderclient.v3
sys.modules["SocketServer"] = socketserver
# swift is imported (and eventlet with it) even with the Swift collectors off; eventlet's hub then deadlocked the
# process from the gatherer thread (greenlet.error: cannot switch to a different thread). Off here: stubs.
utils = types.SimpleNamespace(HASH_PATH_PREFIX=b"", HASH_PATH_SUFFIX=b"")
ring = types.SimpleNamespace(Ring=None)
sys.modules.update({"swift": types.SimpleNamespace(common=types.SimpleNamespace(utils=utils))})
sys.modules.update({"swift.common": sys.modules["swift"].common, "swift.common.utils": utils})
sys.modules.update({"swift.common.ring": types.SimpleNamespace(ring=ring), "swift.common.ring.ring": ring})
sys.modules["BaseHTTPServer"] = types.SimpleNamespace(BaseHTTPRequestHandler=Handler, HTTPServer=Server)
_latest = prometheus_client.generate_latest
prometheus_client.generate_latest = lambda registry: _latest(registry).decode()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
#: how many collection cycles the scrapes should span (as bench/exporter.py)
CYCLES_SPANNED = 2.5
FIRST_CYCLE_TIMEOUT = 300.0
#: the proxies must have been idle this long (nothing in flight) before an exporter is stopped mid-pause
QUIET_SECONDS = 2.0
QUIET_TIMEOUT = 120.0
#: failed scrapes in a row after which an exporter is taken to have stopped answering
GIVE_UP = 3
SCRAPE_TIMEOUT = 10.0
#: the peer's families (all of them, from its source) -> hammersmith's nearest family or None, and how they differ
FAMILIES: dict[str, tuple[str | None, str]] = {
    "neutron_public_ip_usage": (
        "hammersmith_neutron_floating_ips",
        "floating IPs only, `associated`/`idle`; no router gateway IPs, no split by project or network",
    ),
    "neutron_net_size": (None, "addresses in each network's IPv4 allocation pools"),
    **{
        f"hypervisor_{what}": (None, "per Nova hypervisor; Nova's Ironic driver reports no CPU, RAM or disk")
        for what in (
            "running_vms",
            "vcpus_total",
            "vcpus_used",
            "memory_mbs_total",
            "memory_mbs_used",
            "disk_gbs_total",
            "disk_gbs_used",
            "schedulable_instances",
            "schedulable_instances_capacity",
        )
    },
    "nova_instances": ("hammersmith_nova_servers", "servers by status; no `tenant` label"),
    **{f"nova_resources_{what}": (None, "flavor sums per project") for what in ("ram_mbs", "vcpus", "disk_gbs")},
    "openstack_allocation_ratio": (None, "echoes the peer's own config"),
    **{
        f"nova_quota_{what}": (None, "Nova quotas per project (one request per project per cycle)")
        for what in ("cores", "floating_ips", "instances", "ram_mbs")
    },
    "cinder_quota_volume_disk_gigabytes": (None, "Cinder: hammersmith reads no Cinder (the tier has none)"),
    "cinder_quota_volume_disks": (None, "Cinder: hammersmith reads no Cinder (the tier has none)"),
    **{
        f"swift_{what}": (None, "Swift recon on port 6000 of configured hosts (the tier has no Swift)")
        for what in (
            "host_up",
            "disk_usage_bytes",
            "quarantined_objects",
            "replication_stats",
            "replication_duration_seconds",
            "account_bytes_used",
        )
    },
    "openstack_exporter_cache_age_seconds": ("hammersmith_snapshot_age_seconds", "same meaning"),
    "openstack_exporter_cache_refresh_duration_seconds": (
        "hammersmith_snapshot_duration_seconds",
        "the peer's includes building its clients and pickling its cache",
    ),
}
#: collectors the peer runs here: cinder and swift need services the tier does not have
PEER_COLLECTORS = ("nova", "neutron")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade", "te"}
TYPE_LINE = re.compile(r"# TYPE (\S+) ")
SERVICE_DOWN = re.compile(r'^hammersmith_service_up\{[^}]*service="([^"]+)"[^}]*\} 0', re.M)


@dataclass
class Call:
    """One proxied request: when it was sent and answered (Unix time), to which service, what, and the status."""

    start: float
    end: float
    service: str
    method: str
    path: str
    status: int


class CountingProxy:
    """A loopback HTTP proxy per service that records every request and keeps the client on the proxies.

    Each answer's body and Location have every upstream base URL replaced by its proxy's, so a
    catalog, a version document or a `next` link leads the client to another proxy, never around them.
    """

    def __init__(self, upstreams: dict[str, str]) -> None:
        """`upstreams`: service -> its base URL (scheme://host:port)."""
        self.calls: list[Call] = []
        self.in_flight = 0
        self.lock = threading.Lock()
        self.servers: dict[str, http.server.ThreadingHTTPServer] = {}
        for service in upstreams:
            self.servers[service] = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler(service))
        self.bases = {s: f"http://127.0.0.1:{server.server_address[1]}" for s, server in self.servers.items()}
        self.upstreams = upstreams
        self.rewrites = [(upstreams[s].encode(), self.bases[s].encode()) for s in upstreams]
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self.servers.values()]
        for thread in self.threads:
            thread.start()

    def url(self, service: str, upstream_url: str) -> str:
        """`upstream_url` (one of `service`'s) through its proxy."""
        return upstream_url.replace(self.upstreams[service], self.bases[service], 1)

    def rewrite(self, data: bytes) -> bytes:
        for upstream, proxied in self.rewrites:
            data = data.replace(upstream, proxied)
        return data

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()

    def quiet_since(self) -> float | None:
        """When the last request was answered, or None while one is in flight."""
        with self.lock:
            if self.in_flight:
                return None
            return max((c.end for c in self.calls), default=0.0)

    def wait_quiet(self, seconds: float, timeout: float) -> bool:
        """Until nothing has been in flight for `seconds` (an exporter between cycles); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.quiet_since()
            if last is not None and time.time() - last >= seconds:
                return True
            time.sleep(0.2)
        return False

    def _handler(self, service: str) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
                """Silent: the calls list is the log."""

            def forward(self) -> None:
                start = time.time()
                with proxy.lock:
                    proxy.in_flight += 1
                status = 0
                try:
                    target = urlsplit(proxy.upstreams[service])
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length) if length else None
                    # identity encoding: a compressed body could not be rewritten
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in HOP_BY_HOP | {"host", "accept-encoding"}
                    }
                    upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                    try:
                        upstream.request(self.command, self.path, body=body, headers=headers)
                        response = upstream.getresponse()
                        data = proxy.rewrite(response.read())
                        status = response.status
                        self.send_response(status, response.reason)
                        for k, v in response.getheaders():
                            if k.lower() not in HOP_BY_HOP:
                                self.send_header(
                                    k, proxy.rewrite(v.encode()).decode() if k.lower() == "location" else v
                                )
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        if self.command != "HEAD":
                            self.wfile.write(data)
                    finally:
                        upstream.close()
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1
                        proxy.calls.append(Call(start, time.time(), service, self.command, self.path, status))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = forward

        return Handler


def split_cycles(calls: list[Call], gap: float) -> list[list[Call]]:
    """Group requests into cycles: a new one starts after `gap` s with nothing sent."""
    groups: list[list[Call]] = []
    last_end = 0.0
    for call in sorted(calls, key=lambda c: c.start):
        if not groups or call.start - last_end > gap:
            groups.append([])
        groups[-1].append(call)
        last_end = max(last_end, call.end)
    return groups


def path_shape(path: str) -> str:
    """A request path without its query values and IDs, so a cycle's calls can be listed briefly."""
    route, _, query = path.partition("?")
    route = re.sub(r"/[0-9a-f]{32}\b|/[0-9a-f-]{36}\b", "/{id}", route)
    keys = sorted({pair.partition("=")[0] for pair in query.split("&") if pair})
    return route + (f"?{'&'.join(keys)}" if keys else "")


def families(body: str) -> dict[str, int]:
    """Family (from its # TYPE line) -> samples in this exposition."""
    found: dict[str, int] = {}
    current = ""
    for line in body.splitlines():
        if m := TYPE_LINE.match(line):
            current = m[1]
            found.setdefault(current, 0)
        elif line and not line.startswith("#") and current:
            found[current] += 1
    return found


@dataclass
class Lane:
    """One exporter's run: its scrapes, the requests its proxies saw, grouped into cycles."""

    name: str
    scrapes_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    first_cycle_seconds: float = 0.0
    pause_seconds: float = 0.0
    body_bytes: int = 0
    samples: int = 0
    families: dict[str, int] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    cycles: list[list[Call]] = field(default_factory=list)
    #: the exporter's own figure per cycle: hammersmith_snapshot_duration_seconds, the peer's cache refresh duration
    reported_cycle_seconds: list[float] = field(default_factory=list)
    #: hammersmith only: delta of hammersmith_api_requests_total per cycle, its own count to check the proxies'
    own_counts: list[dict[str, int]] = field(default_factory=list)
    #: cycles that produced nothing (the peer's "Error getting stats"; hammersmith's result="failed")
    failed_cycles: int = 0
    #: hammersmith only: cycles with a service read partly (result="incomplete"), and the services down at the end
    incomplete_cycles: int = 0
    services_down: list[str] = field(default_factory=list)
    stderr_tail: str = ""
    exit_status: int | None = None

    def per_cycle(self) -> list[dict[str, int]]:
        return [dict(sorted(Counter(c.service for c in cycle).items())) for cycle in self.cycles]

    def cycle_seconds(self) -> list[float]:
        return [round(max(c.end for c in cycle) - min(c.start for c in cycle), 3) for cycle in self.cycles]

    def statuses(self) -> dict[str, int]:
        return dict(sorted(Counter(f"{c.service} {c.status}" for c in self.calls if c.status >= 400).items()))

    def shapes(self) -> dict[str, int]:
        """The last complete cycle's requests by service, method and path shape."""
        if not self.cycles:
            return {}
        return dict(sorted(Counter(f"{c.service} {c.method} {path_shape(c.path)}" for c in self.cycles[-1]).items()))

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.scrapes_ms, n=100, method="inclusive")[q - 1]

    def to_json(self) -> dict[str, Any]:
        origin = min((c.start for c in self.calls), default=0.0)
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("calls", "cycles", "scrapes_ms")},
            "p50_ms": round(statistics.median(self.scrapes_ms), 2) if self.scrapes_ms else None,
            "p99_ms": round(self.percentile(99), 2) if len(self.scrapes_ms) > 1 else None,
            "max_ms": round(max(self.scrapes_ms), 2) if self.scrapes_ms else None,
            "requests_per_cycle": self.per_cycle(),
            "cycle_seconds": self.cycle_seconds(),
            "error_statuses": self.statuses(),
            "last_cycle_requests": self.shapes(),
            "scrapes_ms": [round(m, 2) for m in self.scrapes_ms],
            #: [s after the first request, ms, service, method, path, status]
            "calls": [
                [round(c.start - origin, 3), round((c.end - c.start) * 1000, 1), c.service, c.method, c.path, c.status]
                for c in self.calls
            ],
        }


def upstreams(state: lifecycle.State) -> dict[str, str]:
    """Every HTTP service of the tier -> its base URL."""
    found = {"ironic": state.url}
    for name in state.services:
        if url := lifecycle.service_url(state, name):
            found[name] = url
    return {
        name: f"{parts.scheme}://{parts.netloc}"
        for name, url in found.items()
        if (parts := urlsplit(url)).scheme in ("http", "https")
    }


def scrape(lane: Lane, http: httpx.Client, count: int, on_body: Callable[[bytes, float], None]) -> str:
    """`count` timed sequential GET /metrics with lane.pause_seconds between; returns the last body.
    Gives up after GIVE_UP failures in a row: an exporter that stopped answering."""
    last = b""
    failed_in_a_row = 0
    for i in range(count):
        if failed_in_a_row >= GIVE_UP:
            lane.failures.append(f"stopped answering: gave up after scrape {i - 1} of {count}")
            break
        at, started = time.time(), time.perf_counter()
        try:
            response = http.get("/metrics")
            body = response.content
        except httpx.HTTPError as exc:
            lane.failures.append(f"scrape {i}: {type(exc).__name__}: {exc}")
            failed_in_a_row += 1
            continue
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            lane.failures.append(f"scrape {i}: HTTP {response.status_code}: {body[-300:]!r}")
            failed_in_a_row += 1
            continue
        failed_in_a_row = 0
        lane.scrapes_ms.append(elapsed * 1000)
        on_body(body, at + elapsed)
        last = body
        time.sleep(lane.pause_seconds)
    return last.decode()


def finish(lane: Lane, proxy: CountingProxy, proc: subprocess.Popen[bytes], err: Path, interval: int) -> None:
    """Stop the exporter between two cycles, then group its requests into cycles."""
    if not proxy.wait_quiet(QUIET_SECONDS, QUIET_TIMEOUT):
        lane.failures.append(f"requests still in flight after {QUIET_TIMEOUT:.0f} s")
    lane.exit_status = stop_exporter(proc)
    with proxy.lock:
        lane.calls = sorted(proxy.calls, key=lambda c: c.start)
    lane.cycles = split_cycles(lane.calls, interval / 2)
    lane.stderr_tail = err.read_text(errors="replace")[-3000:] if err.exists() else ""


def wait_for_cycle(lane: Lane, proc: subprocess.Popen[bytes], http: httpx.Client, ready: Callable[[str], bool]) -> None:
    """Poll /metrics until `ready` says its first cycle is in; an error if the exporter exits or time runs out."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < FIRST_CYCLE_TIMEOUT:
        if proc.poll() is not None:
            raise RuntimeError(f"{lane.name} exited with {proc.returncode} before its first cycle")
        try:
            response = http.get("/metrics")
            if response.status_code == 200 and ready(response.text):
                lane.first_cycle_seconds = round(time.perf_counter() - t0, 2)
                return
        except httpx.TransportError:  # not listening yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{lane.name}: no cycle within {FIRST_CYCLE_TIMEOUT:.0f} s")


def pause(proxy: CountingProxy, interval: int, scrapes: int) -> float:
    """Scrape pause spanning CYCLES_SPANNED cycles, a cycle being its read (the first one's, so far) plus the wait."""
    with proxy.lock:
        span = max(c.end for c in proxy.calls) - min(c.start for c in proxy.calls) if proxy.calls else 0.0
    return round(CYCLES_SPANNED * (interval + span) / scrapes, 3)


def run_peer(state: lifecycle.State, workdir: Path, scrapes: int, interval: int, console: Console) -> Lane:
    """The packaged peer, as Keystone's admin, through its own proxies; stopped by PID whatever happens."""
    lane = Lane("prometheus-openstack-exporter")
    directory = workdir / "peer"
    directory.mkdir()
    port = free_port()
    config = {
        "listen_port": port,
        "cache_refresh_interval": interval,
        "cache_file": str(directory / "cache"),
        "cloud": "bench",
        "openstack_allocation_ratio_vcpu": 2.5,
        "openstack_allocation_ratio_ram": 1.1,
        "openstack_allocation_ratio_disk": 1.0,
        "log_level": "INFO",
        "enabled_collectors": list(PEER_COLLECTORS),
        "schedulable_instance_size": {"ram_mbs": 4096, "vcpu": 2, "disk_gbs": 20},
        # no Cinder in the tier: else its quota read fails the whole cycle
        "use_nova_volumes": False,
    }
    (directory / "peer.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proxy = CountingProxy(upstreams(state))
    assert state.auth_url is not None
    env = {
        **os.environ,
        "OS_IDENTITY_API_VERSION": "3",
        "OS_AUTH_URL": proxy.url("keystone", state.auth_url),
        "OS_USERNAME": "admin",
        "OS_PASSWORD": state.passwords["admin"],
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "PYTHONUNBUFFERED": "1",
    }
    err = directory / "peer.err"
    with (directory / "peer.out").open("wb") as out, err.open("wb") as errors:
        proc = subprocess.Popen(
            ["/usr/bin/python3", "-c", PEER_SHIM, str(PEER), str(directory / "peer.yaml")],
            stdout=out,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            cwd=directory,
            env=env,
            start_new_session=True,
        )
    console.log(f"peer: PID {proc.pid} on 127.0.0.1:{port}")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=SCRAPE_TIMEOUT) as http:
            wait_for_cycle(lane, proc, http, lambda body: "openstack_exporter_cache_age_seconds" in body)
            lane.pause_seconds = pause(proxy, interval, scrapes)
            console.log(f"peer: first cycle after {lane.first_cycle_seconds} s; {scrapes} scrapes")
            durations: dict[float, None] = {}

            def note(body: bytes, at: float) -> None:
                for line in body.split(b"\n"):
                    if line.startswith(b"openstack_exporter_cache_refresh_duration_seconds{"):
                        durations[round(float(line.rpartition(b" ")[2]), 3)] = None

            text = scrape(lane, http, scrapes, note)
            lane.reported_cycle_seconds = list(durations)
        lane.body_bytes, lane.samples, lane.families = len(text.encode()), samples(text.encode()), families(text)
    except Exception as exc:  # still stop everything and report what was measured
        lane.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        finish(lane, proxy, proc, err, interval)
        proxy.close()
    lane.failed_cycles = lane.stderr_tail.count("Error getting stats")
    return lane


def run_hammersmith(
    state: lifecycle.State, workdir: Path, scrapes: int, interval: int, account: str, console: Console
) -> Lane:
    """`python -m hammersmith exporter` through its own proxies: the testbed's cloud (v3password, no discovery
    before the login) as `account`, Keystone's admin in project admin as the peer, or the testbed's own."""
    lane = Lane("hammersmith exporter")
    directory = workdir / "hammersmith"
    directory.mkdir()
    proxy = CountingProxy(upstreams(state))
    testbed_clouds = yaml.safe_load((workdir / "clouds.yaml").read_text())
    cloud = testbed_clouds["clouds"][CLOUD_NAME]
    cloud["auth"]["auth_url"] = proxy.url("keystone", cloud["auth"]["auth_url"])
    if account == "admin":
        cloud["auth"] |= {"username": "admin", "password": state.passwords["admin"], "project_name": "admin"}
    clouds = directory / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {SITE: cloud}}, sort_keys=False))
    config = write_hammersmith_config(directory, interval)  # site SITE on cloud SITE: the one above
    listen = yaml.safe_load(config.read_text())["http"]["listen"]
    proc = start_exporter(directory, config, clouds)
    console.log(f"hammersmith: PID {proc.pid} on {listen}")
    seen = Cycles()
    try:
        with httpx.Client(base_url=f"http://{listen}", timeout=SCRAPE_TIMEOUT) as http:

            def recorded(body: str) -> bool:
                """Any cycle counts (an incomplete one is reported, not waited past)."""
                series = watched(body.encode())
                seen.add(series, time.time())
                return cycles(series) >= 1

            wait_for_cycle(lane, proc, http, recorded)
            lane.pause_seconds = pause(proxy, interval, scrapes)
            console.log(f"hammersmith: first cycle after {lane.first_cycle_seconds} s; {scrapes} scrapes")
            text = scrape(lane, http, scrapes, lambda body, at: seen.add(watched(body), at))
        lane.body_bytes, lane.samples, lane.families = len(text.encode()), samples(text.encode()), families(text)
        lane.reported_cycle_seconds = seen.durations()
        lane.own_counts = seen.deltas()
        last = watched(text.encode())
        lane.failed_cycles, lane.incomplete_cycles = cycles(last, "failed"), cycles(last, "incomplete")
        lane.services_down = SERVICE_DOWN.findall(text)
    except Exception as exc:
        lane.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        finish(lane, proxy, proc, directory / "exporter.err", interval)
        proxy.close()
    return lane


def coverage(peer: Lane, ours: Lane) -> list[dict[str, Any]]:
    """Per peer family: what the peer exported here, hammersmith's family and whether it exported it."""
    rows = []
    for family, (mapped, note) in FAMILIES.items():
        produced = peer.families.get(family)
        rows.append(
            {
                "peer_family": family,
                "peer_samples": produced,
                "hammersmith_family": mapped,
                "hammersmith_samples": ours.families.get(mapped) if mapped else None,
                "note": note,
            }
        )
    return rows


def steady(lane: Lane) -> dict[str, int]:
    """Requests per service of the cycles after the first (the first may add discovery), as their median."""
    later = lane.per_cycle()[1:] or lane.per_cycle()
    services = sorted({s for c in later for s in c})
    return {s: int(statistics.median(c.get(s, 0) for c in later)) for s in services}


def report(lanes: list[Lane], rows: list[dict[str, Any]], args: argparse.Namespace, console: Console) -> None:
    services = sorted({c.service for lane in lanes for c in lane.calls})
    table = Table(title=f"requests per cycle, through counting proxies (median of cycles 2+; {args.nodes} nodes)")
    table.add_column("exporter")
    for service in services:
        table.add_column(service, justify="right")
    table.add_column("total", justify="right")
    table.add_column("cycles", justify="right")
    for lane in lanes:
        counts = steady(lane)
        table.add_row(
            lane.name,
            *[str(counts.get(s, 0)) for s in services],
            str(sum(counts.values())),
            str(len(lane.cycles)),
        )
    console.print(table)
    timing = Table(title=f"cycle wall time and GET /metrics ({args.scrapes} sequential scrapes, {os.cpu_count()} CPUs)")
    for column in ("exporter", "cycle s (proxies)", "cycle s (own)", "p50 ms", "p99 ms", "max ms", "samples", "bytes"):
        timing.add_column(column, justify="right")
    for lane in lanes:
        if not lane.scrapes_ms:
            timing.add_row(lane.name, *["-"] * 7)
            continue
        timing.add_row(
            lane.name,
            ", ".join(f"{s:.2f}" for s in lane.cycle_seconds()),
            ", ".join(f"{s:.2f}" for s in lane.reported_cycle_seconds),
            f"{statistics.median(lane.scrapes_ms):.1f}",
            f"{lane.percentile(99):.1f}" if len(lane.scrapes_ms) > 1 else "-",
            f"{max(lane.scrapes_ms):.1f}",
            str(lane.samples),
            f"{lane.body_bytes:,}",
        )
    console.print(timing)
    if len(lanes) == 2 and all(lane.scrapes_ms for lane in lanes):
        peer, ours = lanes
        requests = sum(steady(peer).values()) / max(1, sum(steady(ours).values()))
        console.print(
            f"peer / hammersmith: requests per cycle {requests:.1f}x,"
            f" scrape p50 {statistics.median(peer.scrapes_ms) / statistics.median(ours.scrapes_ms):.1f}x,"
            f" p99 {peer.percentile(99) / ours.percentile(99):.1f}x"
        )
    families_table = Table(title="the peer's families: what each exported here, and hammersmith's counterpart")
    for column in ("peer family", "peer samples", "hammersmith family", "hammersmith samples"):
        families_table.add_column(column)
    for row in rows:
        families_table.add_row(
            row["peer_family"],
            "not enabled" if row["peer_samples"] is None else str(row["peer_samples"]),
            row["hammersmith_family"] or "[yellow]not covered[/yellow]",
            "-" if row["hammersmith_samples"] is None else str(row["hammersmith_samples"]),
        )
    console.print(families_table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4, help="Ironic nodes (each a nova-compute)")
    parser.add_argument("--scrapes", type=int, default=200, help="timed scrapes per exporter")
    parser.add_argument("--interval", type=int, default=10, help="seconds between cycles, both exporters")
    parser.add_argument(
        "--account",
        choices=("admin", "hammersmith"),
        default="admin",
        help="hammersmith's login: Keystone's admin, as the peer (default), or the testbed's least-privilege account",
    )
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    if not PEER.exists():
        console.print(f"[red]{PEER} missing: apt-get install -y {PEER_PACKAGE} (see bench/README.md)[/red]")
        return 1
    services = {"nova"} | ({"blazar"} & set(lifecycle.SERVICES))
    started, loadavg_before = datetime.now(UTC), os.getloadavg()
    lanes: list[Lane] = []
    with tempfile.TemporaryDirectory(prefix="hammersmith-peer-") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        try:
            state = lifecycle.up(workdir, args.nodes, None, lambda d, t: lambda done: None, services=services)
            up_seconds = round(time.perf_counter() - t0, 1)
            console.log(f"tier up in {up_seconds} s: {', '.join(sorted(upstreams(state)))}")
            scrapes = max(2, args.scrapes)
            lanes.append(run_peer(state, workdir, scrapes, args.interval, console))
            lanes.append(run_hammersmith(state, workdir, scrapes, args.interval, args.account, console))
        finally:
            lifecycle.down(workdir)
    rows = coverage(*lanes)
    report(lanes, rows, args, console)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        dumps(
            {
                "started_at": started.isoformat(),
                "nodes": args.nodes,
                "scrapes": args.scrapes,
                "interval": args.interval,
                "hammersmith_account": args.account,
                "services": sorted(services),
                "up_seconds": up_seconds,
                "peer_package": subprocess.run(
                    ["dpkg-query", "-W", "-f", "${Version}", PEER_PACKAGE], capture_output=True, text=True
                ).stdout,
                "machine": machine(),
                "loadavg_before": loadavg_before,
                "requests_per_cycle_steady": {lane.name: steady(lane) for lane in lanes},
                "coverage": rows,
                "lanes": [lane.to_json() for lane in lanes],
            }
        )
        + "\n"
    )
    console.log(f"wrote {RESULTS}")
    for lane in lanes:
        for problem in dict.fromkeys(lane.failures):
            console.print(f"[red]{lane.name}: {problem}[/red]")
        if lane.failed_cycles:
            console.print(f"[red]{lane.name}: {lane.failed_cycles} failed cycle(s)[/red]")
        if lane.incomplete_cycles:
            down = ", ".join(lane.services_down)
            console.print(
                f"[yellow]{lane.name}: {lane.incomplete_cycles} incomplete cycle(s), not read: {down}[/yellow]"
            )
    return 1 if any(lane.failures or lane.failed_cycles or not lane.cycles for lane in lanes) else 0


if __name__ == "__main__":
    sys.exit(main())
