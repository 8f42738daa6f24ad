"""The collector registry: one module per service or concern, registered with @collector.

A collector turns the telemetry (every site's latest cycle) into metric families when
Prometheus scrapes. Sites add their own through the `hammersmith.collectors` entry point group.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

from prometheus_client.core import Metric

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.plugins import load_plugins
from hammersmith.quantify.telemetry import SiteView, Telemetry

BUILTIN = (
    "ironic",
    "nova",
    "neutron",
    "placement",
    "blazar",
    "freshness",
    "api",
    "launches",
    "hammers",
    "incidents",
    "http",
    "probes",
    "smoke",
    "schedule",
)


class Collector:
    """Base class: subclasses set `name` and implement `collect()`."""

    name: ClassVar[str]
    #: True when values change between cycles (ages, live request counters): never served from the cache
    dynamic: ClassVar[bool] = False
    #: what the cached text depends on: "cycle" (snapshots, findings, ledger), "probes" or "smoke"; a probe
    #: run then re-renders only the probe families, not 10,000 nodes
    topic: ClassVar[str] = "cycle"

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterable[Metric]:
        raise NotImplementedError

    def snapshots(self, *services: str) -> Iterator[tuple[str, Snapshot]]:
        """(site, snapshot) for each site whose latest snapshot read these services in full."""
        for site, view in sorted(self.telemetry.views().items()):
            if view.snapshot is not None and view.snapshot.complete(*services):
                yield site, view.snapshot

    def views(self) -> Iterator[tuple[str, SiteView]]:
        yield from sorted(self.telemetry.views().items())


COLLECTORS: dict[str, type[Collector]] = {}


def collector(cls: type[Collector]) -> type[Collector]:
    """Register a collector class under its `name`."""
    if cls.name in COLLECTORS and COLLECTORS[cls.name] is not cls:
        raise ValueError(f"collector {cls.name!r} registered twice")
    COLLECTORS[cls.name] = cls
    return cls


def load() -> dict[str, type[Collector]]:
    load_plugins(__name__, BUILTIN, "hammersmith.collectors")
    return COLLECTORS
