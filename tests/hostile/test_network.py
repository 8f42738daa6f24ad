"""The agent's port under hostile clients (issue 11, "The network"): slow and idle connections, a scrape flood,
TLS and basic auth. Every test talks to a real `hammersmith run` over real sockets."""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import httpx
import yaml

from hammersmith.testbed.prometheus import Alertmanager, Prometheus
from tests.conftest import Testbed, hammersmith
from tests.hostile.conftest import TOKEN, AgentProcess, agent_config
from tests.web.tls import make_pki

ALERT = {
    "version": "4",
    "groupKey": "g",
    "status": "firing",
    "receiver": "hs",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "X"},
            "startsAt": "2026-11-30T12:00:00Z",
            "fingerprint": "abc123",
        }
    ],
}
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SCRAPE_PASSWORD = "scrape-secret"
# what a slow client sends: a request line and part of the headers, or whole headers and part of the body
PARTIAL_HEADERS = b"GET /metrics HTTP/1.1\r\nHost: agent\r\nUser-Agent: slo"
PARTIAL_BODY = b'POST /api/v1/alertmanager HTTP/1.1\r\nHost: agent\r\nContent-Length: 4096\r\n\r\n{"version":'


def enough_descriptors(count: int) -> None:
    """This test process holds as many client sockets as the agent; raise our own soft limit if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_fds(pid: int, done: Callable[[int], bool], timeout: float) -> int:
    """The agent's open descriptor count once `done` holds for it (or the last count after `timeout`)."""
    deadline = time.monotonic() + timeout
    count = open_fds(pid)
    while not done(count) and time.monotonic() < deadline:
        time.sleep(0.05)
        count = open_fds(pid)
    return count


def slow_clients(url: str, count: int) -> list[socket.socket]:
    """`count` connections, half stuck in their headers and half in their body (less than Content-Length)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    clients = []
    for i in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(PARTIAL_HEADERS if i % 2 else PARTIAL_BODY)
        clients.append(sock)
    return clients


def closed_by_agent(clients: list[socket.socket], timeout: float) -> int:
    """How many of `clients` the agent closed (EOF or reset) within `timeout` seconds."""
    closed = 0
    with selectors.DefaultSelector() as selector:
        for sock in clients:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while closed < len(clients) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    closed += 1
    return closed


def post_alert(url: str, **client: object) -> tuple[int, float]:
    """A real webhook delivery on a new connection, as Alertmanager sends it: its status and seconds taken."""
    with httpx.Client(timeout=10, **client) as http:  # type: ignore[arg-type]
        started = time.perf_counter()  # not the client's own set-up (its CA bundle alone takes ~50 ms)
        status = http.post(f"{url}/api/v1/alertmanager", json=ALERT, headers=BEARER).status_code
        return status, time.perf_counter() - started


def test_slow_clients_do_not_lock_out_alertmanager(agent_process: Callable[..., AgentProcess]) -> None:
    enough_descriptors(600)
    agent = agent_process(http={"header_timeout_seconds": 2, "body_timeout_seconds": 2})
    pid = agent.proc.pid
    assert httpx.get(f"{agent.url}/healthz", timeout=5).status_code == 200
    baseline = open_fds(pid)
    clients = slow_clients(agent.url, 500)
    try:
        # within the 2 s header timeout; a few of the baseline's descriptors (OpenStack sessions) come and go
        attached = wait_fds(pid, lambda n: n >= baseline + 490, timeout=1.5)
        status, seconds = post_alert(agent.url)
        health = httpx.get(f"{agent.url}/healthz", timeout=5).status_code
        print(
            f"\n500 slow clients attached: agent fds {baseline} -> {attached}; "
            f"webhook {status} in {seconds * 1000:.1f} ms"
        )
        assert attached >= baseline + 490
        assert (status, health) == (200, 200)
        assert seconds < 1.0  # the acceptance figure
        closed = closed_by_agent(clients, timeout=2 + 3)
        after = wait_fds(pid, lambda n: n <= baseline + 10, timeout=5)
        print(f"slow clients closed by the agent after header/body timeout 2 s: {closed}/500; agent fds {after}")
        assert closed == 500
        assert after <= baseline + 10
        metrics = httpx.get(f"{agent.url}/metrics", timeout=5).text
        assert 'hammersmith_http_requests_refused_total{reason="timed_out"} 500.0' in metrics
    finally:
        for sock in clients:
            sock.close()


def test_at_the_connection_cap_the_oldest_waiting_client_makes_room(
    agent_process: Callable[..., AgentProcess],
) -> None:
    enough_descriptors(400)
    agent = agent_process(http={"max_connections": 64, "header_timeout_seconds": 60, "body_timeout_seconds": 60})
    pid = agent.proc.pid
    baseline = open_fds(pid)
    clients = slow_clients(agent.url, 300)
    try:
        status, seconds = post_alert(agent.url)
        health = httpx.get(f"{agent.url}/healthz", timeout=5).status_code
        held = open_fds(pid)
        print(
            f"\n300 slow clients, max_connections 64: webhook {status} in {seconds * 1000:.1f} ms; "
            f"fds {baseline} -> {held}"
        )
        assert (status, health) == (200, 200) and seconds < 1.0
        assert held <= baseline + 64 + 8  # a few of the baseline's descriptors (OpenStack sessions) come and go
        # the oldest were closed to make room (long before their 60 s timeout), the newest are still attached
        assert closed_by_agent(clients[:200], timeout=2) == 200
        assert closed_by_agent(clients[-30:], timeout=0.5) == 0
        metrics = httpx.get(f"{agent.url}/metrics", timeout=5).text
        assert 'hammersmith_http_requests_refused_total{reason="evicted"}' in metrics
        assert "hammersmith_http_connections_open " in metrics
        assert "http.max_connections (64) reached" in agent.wait_for("max_connections")
    finally:
        for sock in clients:
            sock.close()


HAMMER = """
import asyncio, collections, json, sys, time
import httpx

async def main(url, clients, seconds):
    codes = collections.Counter()
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=10, limits=limits) as http:
        async def one():
            while time.monotonic() < end:
                try:
                    codes[(await http.get(url)).status_code] += 1
                except httpx.HTTPError as exc:
                    codes[type(exc).__name__] += 1
        await asyncio.gather(*(one() for _ in range(clients)))
    print(json.dumps(codes))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


def test_a_scrape_flood_does_not_starve_the_webhook(agent_process: Callable[..., AgentProcess]) -> None:
    agent = agent_process()
    # the flood in its own process, so its event loop and GIL do not slow down our own measurements
    hammer = subprocess.Popen(
        [sys.executable, "-c", HAMMER, f"{agent.url}/metrics", "100", "4"], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(1)  # the flood is on
        webhook, health = [], []
        while hammer.poll() is None and len(webhook) < 10:
            webhook.append(post_alert(agent.url))
            started = time.perf_counter()
            health.append((httpx.get(f"{agent.url}/healthz", timeout=10).status_code, time.perf_counter() - started))
            time.sleep(0.2)
        out, _ = hammer.communicate(timeout=30)
    finally:
        if hammer.poll() is None:
            hammer.kill()
            hammer.wait()
    codes = json.loads(out)
    worst_webhook, worst_health = max(s for _, s in webhook), max(s for _, s in health)
    print(
        f"\n/metrics flood (100 clients, 4 s): {codes}; webhook worst {worst_webhook * 1000:.1f} ms over "
        f"{len(webhook)}, /healthz worst {worst_health * 1000:.1f} ms"
    )
    assert codes.get("200", 0) > 100  # the agent did serve the flood
    assert len(webhook) >= 5
    assert {status for status, _ in webhook} == {200} and {status for status, _ in health} == {200}
    assert worst_webhook < 1.0 and worst_health < 1.0


def tls_and_basic_auth(directory: Path) -> Path:
    """web.yml beside make_pki's files: TLS with its server certificate, user `prom` with SCRAPE_PASSWORD."""
    hashed = bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web = directory / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prom: '{hashed}'\n"
    )
    return web


def test_tls_and_basic_auth_from_the_web_config(agent_process: Callable[..., AgentProcess], tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    agent = agent_process(http={"web_config_file": str(tls_and_basic_auth(tmp_path))})
    assert agent.url.startswith("https://127.0.0.1:")
    assert "serving metrics on https://" in agent.wait_for("serving metrics on")
    ca = ssl.create_default_context(cafile=str(pki.ca))
    with httpx.Client(base_url=agent.url, verify=ca, timeout=10) as http:
        assert http.get("/healthz").status_code == 200  # liveness checks need no password
        for auth in (None, ("prom", "wrong"), ("nobody", SCRAPE_PASSWORD)):
            refused = http.get("/metrics", auth=auth)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Basic realm="hammersmith"'
        assert http.get("/runbooks", auth=("prom", "wrong")).status_code == 401
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            assert http.get("/metrics", auth=("prom", SCRAPE_PASSWORD)).status_code == 200
            timings.append(time.perf_counter() - started)
        print(f"\n/metrics over TLS with basic auth: {', '.join(f'{t * 1000:.1f}' for t in timings)} ms (bcrypt once)")
        assert max(timings[1:]) < timings[0]
        # the webhook keeps its own bearer token: a scrape password is neither needed nor enough
        assert http.post("/api/v1/alertmanager", json=ALERT, headers=BEARER).status_code == 200
        no_bearer = http.post("/api/v1/alertmanager", json=ALERT, auth=("prom", SCRAPE_PASSWORD))
        assert no_bearer.status_code == 401
    # plain HTTP on the TLS port gets no answer, and any client without our CA refuses the certificate
    plain = agent.url.replace("https://", "http://")
    for attempt in (lambda: httpx.get(f"{plain}/healthz", timeout=5), lambda: httpx.get(f"{agent.url}/healthz")):
        try:
            attempt()
        except httpx.HTTPError:
            continue
        raise AssertionError("the agent answered without TLS, or with a certificate nobody should trust")
    assert "Traceback" not in agent.log()


def test_a_bad_web_config_stops_the_start_with_its_line(testbed: Testbed, tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    config = agent_config(tmp_path, testbed, http={"web_config_file": "web.yml"})  # relative to the config file
    env = {"OS_CLIENT_CONFIG_FILE": str(testbed.workdir / "clouds.yaml")}
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  a: b\n")
    done = hammersmith("--config", str(config), "run", cwd=tmp_path, env=env, timeout=60)
    print(done.stderr)
    assert done.returncode == 2
    assert f"{web}:4: 'basic_auth_users': user 'a': the password must be a bcrypt hash" in done.stderr
    assert "Traceback" not in done.stderr and "serving metrics" not in done.stderr
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    done = hammersmith("--config", str(config), "run", cwd=tmp_path, env=env, timeout=60)
    print(done.stderr)
    assert done.returncode == 2
    assert f"{web}:2: 'tls_server_config.cert_file': cannot read {tmp_path}/server.crt" in done.stderr
    assert "Traceback" not in done.stderr and "serving metrics" not in done.stderr
    checked = hammersmith("--config", str(config), "config", "validate", cwd=tmp_path, env=env, timeout=60)
    assert checked.returncode == 2
    assert f"{web}:2: 'tls_server_config.cert_file': cannot read {tmp_path}/server.crt" in checked.stderr


def test_client_certificates_required_and_verified(agent_process: Callable[..., AgentProcess], tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n"
    )
    agent = agent_process(http={"web_config_file": str(web)})
    with_cert = ssl.create_default_context(cafile=str(pki.ca))
    with_cert.load_cert_chain(pki.client_cert, pki.client_key)
    assert httpx.get(f"{agent.url}/metrics", verify=with_cert, timeout=10).status_code == 200
    try:
        httpx.get(f"{agent.url}/metrics", verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10)
    except httpx.HTTPError:
        pass
    else:
        raise AssertionError("the agent answered a client without a certificate")
    assert httpx.get(f"{agent.url}/healthz", verify=with_cert, timeout=10).status_code == 200


def test_clients_that_never_read_their_scrape_are_bounded(agent_process: Callable[..., AgentProcess]) -> None:
    agent = agent_process(http={"body_timeout_seconds": 2})
    host, port = agent.url.removeprefix("http://").rsplit(":", 1)
    readers = []
    for _ in range(40):  # more than the /metrics budget (32); each pipelines scrapes and reads none of the answers
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n" * 300)
        readers.append(sock)
    try:
        started = time.monotonic()
        statuses = []
        while 503 not in statuses and time.monotonic() - started < 30:
            statuses.append(httpx.get(f"{agent.url}/metrics", timeout=10).status_code)
            assert httpx.get(f"{agent.url}/healthz", timeout=10).status_code == 200
        full = time.monotonic() - started
        assert statuses[-1] == 503  # the budget is spent on stalled answers: a new scrape is refused at once
        assert post_alert(agent.url)[0] == 200
        while statuses[-1] != 200 and time.monotonic() - started < 60:
            time.sleep(0.2)
            statuses.append(httpx.get(f"{agent.url}/metrics", timeout=10).status_code)
        freed = time.monotonic() - started
        print(f"\n40 non-reading scrapers: /metrics budget spent after {full:.1f} s, free again after {freed:.1f} s")
        assert statuses[-1] == 200  # stalled answers were dropped after body_timeout_seconds
        assert closed_by_agent(readers, timeout=5) == 40
    finally:
        for sock in readers:
            sock.close()


def test_the_exporter_with_listen_keeps_tls(testbed: Testbed, tmp_path: Path) -> None:
    make_pki(tmp_path)
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    config = agent_config(tmp_path, testbed, http={"web_config_file": "web.yml"})
    exporter = subprocess.Popen(
        [sys.executable, "-m", "hammersmith", "--config", str(config), "exporter", "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(testbed.workdir / "clouds.yaml")},
    )
    try:
        assert exporter.stderr is not None
        line = next((line for line in exporter.stderr if "serving metrics on" in line), "")
        assert "serving metrics on https://127.0.0.1:" in line  # --listen moves the port, not the TLS
    finally:
        exporter.terminate()
        exporter.wait(30)


def test_prometheus_and_alertmanager_reach_the_agent_over_tls(
    agent_process: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """The real Prometheus scrapes with the CA and basic auth; the real Alertmanager delivers over https with
    the bearer token: nothing of either crosses the network in clear."""
    pki = make_pki(tmp_path)
    agent = agent_process(http={"web_config_file": str(tls_and_basic_auth(tmp_path))})
    target = agent.url.removeprefix("https://")
    with Alertmanager(tmp_path / "am") as alertmanager, Prometheus(tmp_path / "prom") as prometheus:
        alertmanager.start(
            yaml.safe_dump(
                {
                    "route": {"receiver": "hammersmith", "group_wait": "0s", "group_interval": "1s"},
                    "receivers": [
                        {
                            "name": "hammersmith",
                            "webhook_configs": [
                                {
                                    "url": f"{agent.url}/api/v1/alertmanager",
                                    "http_config": {
                                        "authorization": {"type": "Bearer", "credentials": TOKEN},
                                        "tls_config": {"ca_file": str(pki.ca)},
                                    },
                                }
                            ],
                        }
                    ],
                }
            )
        )
        prometheus.start(
            [target],
            scrape_options={
                "scheme": "https",
                "tls_config": {"ca_file": str(pki.ca)},
                "basic_auth": {"username": "prom", "password": SCRAPE_PASSWORD},
            },
        )
        up = prometheus.wait_for('up{job="hammersmith"} == 1', timeout=30)
        assert up and [t["health"] for t in prometheus.targets()] == ["up"]
        starts = datetime.now(UTC).isoformat()
        posted = httpx.post(
            f"{alertmanager.url}/api/v2/alerts",
            json=[{"labels": {"alertname": "TlsDelivered", "site": "lab"}, "startsAt": starts}],
            timeout=10,
        )
        assert posted.status_code == 200
        incidents = wait_incidents(agent, "TlsDelivered", timeout=30)
        assert incidents[0]["status"] == "firing"


def wait_incidents(agent: AgentProcess, alertname: str, timeout: float) -> list[dict]:
    """The agent's incidents of `alertname`, through the real CLI, once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        done = hammersmith("--config", str(agent.config), "incidents", "--json", cwd=agent.workdir, timeout=60)
        found = [i for i in json.loads(done.stdout) if i["alertname"] == alertname]
        if found or time.monotonic() > deadline:
            assert found, f"no {alertname} incident; agent log:\n{agent.log()[-3000:]}"
            return found
        time.sleep(0.5)
