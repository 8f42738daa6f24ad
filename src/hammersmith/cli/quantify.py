"""`hammersmith exporter`, and the HTTP server and logging the long-running commands share."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS
from hammersmith.cloud import snapshot as snapshot_mod
from hammersmith.cloud.connection import SiteConnection
from hammersmith.config import Http, Settings
from hammersmith.quantify.collect import observe
from hammersmith.quantify.collectors.schedule import watch
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry, schedule
from hammersmith.store import Store, open_store
from hammersmith.web import webconfig
from hammersmith.web.app import Server, create_app

log = logging.getLogger("hammersmith.agent")

ListenOpt = Annotated[
    str | None, typer.Option("--listen", help="host:port for /metrics (default: http.listen in the config).")
]


def agent_logging() -> None:
    """One line per event on stderr; the OpenStack libraries' own retries and warnings stay quiet."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("keystoneauth", "openstack", "stevedore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so loops finish their cycle and stop cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def listen_on(settings: Settings, listen: str | None) -> Http:
    """--listen, else the config's http.listen; checked before anything connects anywhere."""
    try:
        # only the address changes: TLS, basic auth and the connection limits stay as configured
        return settings.http.model_copy(update={"listen": Http(listen=listen).listen}) if listen else settings.http
    except ValidationError:
        raise typer.BadParameter(
            "must be host:port, e.g. 127.0.0.1:9184 (port 0: any free port)", param_hint="--listen"
        ) from None


@contextmanager
def serving(http: Http, telemetry: Telemetry, **app_options: Any) -> Iterator[Server]:
    # a scrape must get the GIL quickly while a cycle decodes and renders in another thread
    # (measured at 10,000 nodes: p99 of /metrics about halved against the default 5 ms)
    sys.setswitchinterval(0.001)
    # read before anything listens: a certificate that cannot be used stops the start, with its line
    web = webconfig.load(http.web_config_file) if http.web_config_file else webconfig.WebConfig()
    app = create_app(Exporter(telemetry), users=web.users, **app_options)
    server = Server(app, http.host, http.port, http=http, tls=web.tls).start()
    log.info("serving metrics on %s/metrics", server.url)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def opened(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.effective_store_url, settings.state_dir)
    try:
        yield store
    finally:
        store.close()


def exporter(listen: ListenOpt = None) -> None:
    """Serve /metrics for every site of the config: a snapshot loop per site, acting on nothing."""
    agent_logging()
    settings = config_mod.load(OPTIONS.config)
    http = listen_on(settings, listen)
    telemetry = Telemetry(
        list(settings.sites), {name: schedule(site, agent=False) for name, site in settings.sites.items()}
    )
    for name, site in settings.sites.items():
        watch(name, site)  # part-time schedules on /metrics
    stop = stop_on_signals()
    connections = {name: SiteConnection(name, site, telemetry.observer(name)) for name, site in settings.sites.items()}
    try:
        with opened(settings) as store, serving(http, telemetry):

            def loop(name: str) -> None:
                site = settings.sites[name]
                while not stop.is_set():
                    observe(telemetry, store, name, site.policy, lambda: snapshot_mod.take(connections[name]))
                    stop.wait(site.sweep_interval_seconds)

            threads = [threading.Thread(target=loop, args=(name,), name=f"site-{name}") for name in settings.sites]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        for connection in connections.values():
            connection.close()
    log.info("exporter stopped")
