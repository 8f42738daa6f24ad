"""Benchmark: hammersmith's snapshot against raw paginated Ironic list calls.

    .venv/bin/python bench/snapshot.py [--sizes 100,1000,10000] [--repeat 3]

For each size N a fresh real Ironic (the testbed's) is seeded with N nodes and N ports
(bench/seed.py), then the baseline -- sequential `GET /v1/{nodes,ports}/detail?limit=1000`
following Ironic's `next` links, with httpx -- and `snapshot.take()` are alternated, after
one warm-up each. Prints a table, writes bench/results/snapshot.json, and exits 1 if any
snapshot or baseline came back incomplete. Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from common import HEADERS, baseline, machine, seeded_ironic, write_clouds  # bench/ is the script directory
from rich.console import Console
from rich.table import Table

from hammersmith.cloud import snapshot
from hammersmith.cloud.connection import SiteConnection
from hammersmith.config import Site
from hammersmith.testbed.ironic import ensure_venv

RESULTS = Path(__file__).resolve().parent / "results" / "snapshot.json"


@dataclass
class Result:
    """One size's figures; seconds are wall time of the measured (non warm-up) runs."""

    size: int
    nodes: int = 0
    ports: int = 0
    allocations: int = 0
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    seed_seconds: float = 0.0
    baseline_requests: int = 0
    snapshot_requests: dict[str, int] = field(default_factory=dict)
    baseline_seconds: list[float] = field(default_factory=list)
    snapshot_seconds: list[float] = field(default_factory=list)
    #: this process's CPU time (all threads): what the client itself costs, the rest is waiting on Ironic
    baseline_cpu_seconds: list[float] = field(default_factory=list)
    snapshot_cpu_seconds: list[float] = field(default_factory=list)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline_seconds)

    @property
    def snapshot_median(self) -> float:
        return statistics.median(self.snapshot_seconds)

    @property
    def ratio(self) -> float:
        return self.snapshot_median / self.baseline_median

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "baseline_median": round(self.baseline_median, 4),
            "snapshot_median": round(self.snapshot_median, 4),
            "ratio": round(self.ratio, 3),
            "baseline_cpu_median": round(statistics.median(self.baseline_cpu_seconds), 4),
            "snapshot_cpu_median": round(statistics.median(self.snapshot_cpu_seconds), 4),
        }


def measure(size: int, repeat: int, console: Console) -> Result:
    """Fresh Ironic, seed, warm up, then alternate baseline and snapshot `repeat` times."""
    result = Result(size)
    with tempfile.TemporaryDirectory(prefix=f"hammersmith-bench-{size}-") as tmp:
        t0 = time.perf_counter()
        with seeded_ironic(Path(tmp), size) as state:
            result.seed_seconds = round(time.perf_counter() - t0, 2)
            console.log(f"N={size}: Ironic on {state.url} seeded in {result.seed_seconds} s")
            clouds = write_clouds(Path(tmp), state.url)
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)  # read by SiteConnection's openstacksdk
            conn = SiteConnection("bench", Site(cloud="bench"))
            with httpx.Client(base_url=state.url, headers=HEADERS, timeout=120.0) as http:
                baseline(http)  # warm-up: connections, lazy imports, Ironic's caches
                snapshot.take(conn)
                for _ in range(repeat):
                    t0, c0 = time.perf_counter(), time.process_time()
                    counts, result.baseline_requests = baseline(http)
                    result.baseline_seconds.append(time.perf_counter() - t0)
                    result.baseline_cpu_seconds.append(time.process_time() - c0)
                    check(result, "baseline", counts)
                    t0, c0 = time.perf_counter(), time.process_time()
                    snap = snapshot.take(conn)
                    result.snapshot_seconds.append(time.perf_counter() - t0)
                    result.snapshot_cpu_seconds.append(time.process_time() - c0)
                    result.snapshot_requests = snap.requests
                    data = {k: len(v) for k, v in snap.data.items() if v is not None}
                    result.nodes, result.ports = data.get("nodes", 0), data.get("ports", 0)
                    result.allocations = data.get("allocations", 0)
                    if not snap.complete("ironic"):
                        result.complete = False
                        result.problems.append(f"snapshot incomplete: {snap.services['ironic'].error}")
                    check(result, "snapshot", data)
            conn.close()
    return result


def check(result: Result, what: str, counts: dict[str, int]) -> None:
    """A read that missed nodes or ports is not a fast read: flag it."""
    for resource in ("nodes", "ports"):
        if counts.get(resource) != result.size:
            result.complete = False
            result.problems.append(f"{what} listed {counts.get(resource)} {resource}, expected {result.size}")


def report(results: list[Result], console: Console) -> None:
    table = Table(title=f"snapshot vs baseline (median of measured runs, {os.cpu_count()} CPUs)")
    for column in ("N", "nodes", "ports", "snapshot req", "baseline req", "baseline s", "snapshot s", "ratio"):
        table.add_column(column, justify="right")
    for r in results:
        requests = ", ".join(f"{s} {n}" for s, n in sorted(r.snapshot_requests.items()))
        table.add_row(
            str(r.size),
            str(r.nodes),
            str(r.ports),
            requests,
            str(r.baseline_requests),
            f"{r.baseline_median:.3f}",
            f"{r.snapshot_median:.3f}",
            f"{r.ratio:.2f}" + ("" if r.complete else " INCOMPLETE"),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated node counts")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs of each, after one warm-up")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    console = Console()
    ensure_venv()
    started = datetime.now(UTC)
    results = [measure(size, max(1, args.repeat), console) for size in sizes]
    report(results, console)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "started_at": started.isoformat(),
                "repeat": args.repeat,
                "machine": machine(),
                "results": [r.to_json() for r in results],
            },
            indent=2,
        )
        + "\n"
    )
    console.log(f"wrote {RESULTS}")
    for r in results:
        for problem in dict.fromkeys(r.problems):
            console.print(f"[red]N={r.size}: {problem}[/red]")
    return 0 if all(r.complete for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
