"""/metrics: every registered collector, rendered from the telemetry; never a 500, never a call to OpenStack.

Collectors whose output depends only on the latest cycles are rendered once per cycle -- by the
cycle's own thread, right after it records -- and then served from memory, so a scrape of 10,000
nodes costs a copy, not a re-render (measured: 0.4 s to render, 4 ms to serve). A collector that
raises is left out of that scrape and counted in hammersmith_exporter_collector_errors_total.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest

from hammersmith.quantify.collectors import Collector, load
from hammersmith.quantify.telemetry import Telemetry

log = logging.getLogger(__name__)

#: cycles between handing the frozen heap back to the garbage collector (see Exporter.prime)
UNFREEZE_EVERY = 30


class Exporter:
    def __init__(
        self, telemetry: Telemetry, collectors: dict[str, type[Collector]] | None = None, prime: bool = True
    ) -> None:
        self.telemetry = telemetry
        self.collectors = [cls(telemetry) for cls in (collectors if collectors is not None else load()).values()]
        self._cache: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        self.own = CollectorRegistry(auto_describe=False)
        self.collector_errors = Counter(
            "hammersmith_exporter_collector_errors",
            "Scrapes in which a collector failed and its families were left out.",
            ["collector"],
            registry=self.own,
        )
        self.scrape_seconds = Histogram(
            "hammersmith_exporter_scrape_duration_seconds",
            "Time to render /metrics.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.own,
        )
        ProcessCollector(registry=self.own)
        for c in self.collectors:
            self.collector_errors.labels(c.name)
        self.primed = prime
        self._primes = 0
        if prime:
            telemetry.listeners.append(self.prime)

    def prime(self) -> None:
        """Render the cached families now, so no scrape pays for a new cycle; then freeze the heap.

        A full garbage collection stops every thread, scrapes included, and scans every object:
        at 10,000 nodes a snapshot is millions of dicts, and a pause took 140-300 ms, several times
        a cycle. Frozen objects are skipped by the collector but still freed by reference counting
        when the next snapshot replaces them, so only cyclic garbage made before a freeze waits --
        until every UNFREEZE_EVERY-th cycle hands the heap back for one full collection.
        """
        self.render(observe=False, refresh=True)
        self._primes += 1
        if self._primes % UNFREEZE_EVERY == 0:
            gc.unfreeze()
        else:
            gc.freeze()

    def render(self, observe: bool = True, refresh: bool = False) -> bytes:
        """The exposition text (format 0.0.4); `observe` records the time taken as a scrape.

        When the cycle primes the cache, a scrape that arrives while it re-renders is served the
        previous cycle's text (consistent, and less than a render old) instead of rendering too.
        """
        started = time.perf_counter()
        parts = []
        for c in self.collectors:
            generation = self.telemetry.generations[c.topic]
            cached = self._cache.get(c.name)
            current = cached is not None and (cached[0] == generation or (self.primed and not refresh))
            if not c.dynamic and cached is not None and current:
                parts.append(cached[1])
                continue
            try:
                text = generate_latest(c)
            except Exception:
                log.exception("collector %s failed; its metrics are left out of this scrape", c.name)
                self.collector_errors.labels(c.name).inc()
                with self._lock:
                    self._cache.pop(c.name, None)
                continue
            if not c.dynamic:
                with self._lock:
                    self._cache[c.name] = (generation, text)
            parts.append(text)
        if observe:
            self.scrape_seconds.observe(time.perf_counter() - started)
        parts.append(generate_latest(self.own))
        return b"".join(parts)
