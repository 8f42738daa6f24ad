"""Benchmark: /metrics of the real `hammersmith exporter` against a real Ironic, and what a scrape-time read costs.

    .venv/bin/python bench/exporter.py [--sizes 1000,10000] [--scrapes 300] [--interval 10]

For each size N a fresh real Ironic is seeded with N nodes and N ports (bench/seed.py). First the
baseline: the raw paginated node and port lists (bench/common.py), which an exporter that calls
OpenStack at scrape time (openstack-exporter) pays on every scrape; median of 3 after a warm-up.
Then `python -m hammersmith --config ... exporter` runs as a subprocess with one site on a free
127.0.0.1 port. After its first ok cycle, /metrics is scraped `--scrapes` times by one keep-alive
httpx client, sequentially, with a fixed pause chosen so the scrapes span about 2.5 collection
cycles. From the scraped text: requests per cycle (the snapshot's own count and the delta of
hammersmith_api_requests_total between consecutive cycles), snapshot and render times.

Prints a table, writes bench/results/exporter.json, and exits 1 if a cycle was incomplete or
failed or a scrape did not answer 200. Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from common import HEADERS, PAGE, baseline, machine, seeded_ironic, write_clouds  # bench/ is the script directory
from rich.console import Console
from rich.table import Table

from hammersmith.testbed.ironic import ensure_venv, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "exporter.json"
SITE = "bench"
BASELINE_RUNS = 3
#: how many collection cycles the scrapes should span: at least 2, with room for a slow cycle
CYCLES_SPANNED = 2.5
FIRST_CYCLE_TIMEOUT = 300.0
STOP_TIMEOUT = 30.0
#: after a cycle shows in /metrics its thread still re-renders the cache (0.5 s at 10,000 nodes), unseen from outside
RENDER_MARGIN = 1.0
TARGET_P99 = 0.050
TARGET_SIZE = 10_000
#: a render over 0.1 s re-rendered the cached families itself (a cache miss): serving the cache takes ~1 ms
SLOW_RENDER_BUCKET = 'hammersmith_exporter_scrape_duration_seconds_bucket{le="0.1"}'
#: the series read from each scrape; everything else (the 3 x N node series) is only counted
WATCHED = (
    b"hammersmith_cycles_total",
    b"hammersmith_api_requests_total",
    b"hammersmith_snapshot_requests",
    b"hammersmith_snapshot_duration_seconds",
    b"hammersmith_snapshot_timestamp_seconds",
    b"hammersmith_exporter_scrape_duration_seconds_sum",
    b"hammersmith_exporter_scrape_duration_seconds_count",
    SLOW_RENDER_BUCKET.encode(),
    b"process_cpu_seconds_total",
    b"process_resident_memory_bytes",
)
SERVICE = re.compile(r'service="([^"]*)"')
#: a JSON list of plain numbers/booleans, spread over lines by indent=2
FLAT_LIST = re.compile(r"\[\s*((?:[-\w.+]+,\s*)*[-\w.+]+)\s*\]")


def watched(body: bytes) -> dict[str, float]:
    """Series name with labels -> value, for the WATCHED families only (cheap enough to run on every scrape)."""
    found = {}
    for line in body.split(b"\n"):
        if line.startswith(WATCHED):
            name, _, value = line.rpartition(b" ")
            found[name.decode()] = float(value)
    return found


def per_service(series: dict[str, float], family: str) -> dict[str, int]:
    """Sum a family's series by their `service` label (api_requests_total is also split by HTTP code)."""
    totals: dict[str, int] = {}
    for name, value in series.items():
        if name.startswith(family + "{") and (m := SERVICE.search(name)):
            totals[m[1]] = totals.get(m[1], 0) + int(value)
    return totals


def cycles(series: dict[str, float], result: str | None = None) -> int:
    """hammersmith_cycles_total of the bench site, for one result or all of them."""
    prefix = "hammersmith_cycles_total{"
    return sum(
        int(v)
        for k, v in series.items()
        if k.startswith(prefix) and f'site="{SITE}"' in k and (result is None or f'result="{result}"' in k)
    )


def samples(body: bytes) -> int:
    """Lines that are not comments (# HELP, # TYPE): what Prometheus stores per scrape."""
    lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    return lines - body.count(b"\n#") - body.startswith(b"#")


@dataclass
class Scrape:
    """One timed GET /metrics: when it started (Unix time), how long the full read took, the cycles it saw."""

    at: float
    seconds: float
    cycles: int


@dataclass
class Result:
    """One size's figures; seconds are wall time."""

    size: int
    seed_seconds: float = 0.0
    baseline_requests: int = 0
    baseline_seconds: list[float] = field(default_factory=list)
    first_cycle_seconds: float = 0.0
    pause_seconds: float = 0.0
    scrapes: list[Scrape] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    body_bytes: int = 0
    samples: int = 0
    content_encoding: str | None = None
    #: the latest snapshot's requests per service (hammersmith_snapshot_requests)
    snapshot_requests: dict[str, int] = field(default_factory=dict)
    #: per consecutive pair of cycles seen: delta of hammersmith_api_requests_total per service
    cycle_requests: list[dict[str, int]] = field(default_factory=list)
    #: hammersmith_snapshot_duration_seconds of every cycle seen, in order
    snapshot_seconds: list[float] = field(default_factory=list)
    #: per cycle seen, Unix times: its snapshot started, and RENDER_MARGIN after the first scrape that showed it
    cycle_windows: list[tuple[float, float]] = field(default_factory=list)
    #: hammersmith_exporter_scrape_duration_seconds: every render, the bench's polls before the first cycle too
    render_sum: float = 0.0
    render_count: int = 0
    slow_renders: int = 0
    #: the exporter's own CPU time and resident memory (process_* series) over the scrapes
    exporter_cpu_seconds: float = 0.0
    exporter_rss_bytes: int = 0
    cycle_results: dict[str, int] = field(default_factory=dict)
    exporter_exit: int | None = None
    loadavg_before: tuple[float, ...] = ()
    loadavg_after: tuple[float, ...] = ()
    problems: list[str] = field(default_factory=list)
    exporter_stderr_tail: str = ""

    @property
    def latencies(self) -> list[float]:
        return [s.seconds for s in self.scrapes]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[98]

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline_seconds)

    @property
    def cycles_during(self) -> int:
        return self.scrapes[-1].cycles - self.scrapes[0].cycles if self.scrapes else 0

    @property
    def expected_requests(self) -> int:
        """nodes and ports: a page per 1,000 and one more (Ironic links `next` from every full page); allocations: 1."""
        return 2 * (self.size // PAGE + 1) + 1

    def busy(self) -> list[bool]:
        """Per scrape: did it overlap a cycle (its reads, checks, recording and the re-render of the cache)?"""
        return [any(start < s.at + s.seconds and s.at < end for start, end in self.cycle_windows) for s in self.scrapes]

    def to_json(self) -> dict[str, Any]:
        ms = [s.seconds * 1000 for s in self.scrapes]
        busy = self.busy()
        quiet = [m for m, b in zip(ms, busy, strict=True) if not b]
        figures: dict[str, Any] = {}
        if ms:
            figures = {
                "p50_ms": round(self.p50 * 1000, 2),
                "p99_ms": round(self.p99 * 1000, 2),
                "max_ms": round(max(ms), 2),
                "mean_ms": round(statistics.mean(ms), 2),
                "quiet_scrapes": len(quiet),
                "quiet_p99_ms": round(statistics.quantiles(quiet, n=100, method="inclusive")[98], 2)
                if len(quiet) > 1
                else None,
                "busy_scrapes_ms": [round(m, 2) for m, b in zip(ms, busy, strict=True) if b],
                "cycles_during_scrapes": self.cycles_during,
                "baseline_median": round(self.baseline_median, 4),
                "baseline_over_p99": round(self.baseline_median / self.p99, 1),
                "render_mean_ms": round(self.render_sum / self.render_count * 1000, 2) if self.render_count else None,
            }
        origin = self.scrapes[0].at if self.scrapes else 0.0
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("scrapes", "cycle_windows")},
            **figures,
            "expected_requests": self.expected_requests,
            "cycle_windows": [[round(a - origin, 3), round(b - origin, 3)] for a, b in self.cycle_windows],
            #: [s after the first scrape, ms, cycles seen, overlapped a cycle]
            "scrapes": [
                [round(s.at - origin, 3), round(s.seconds * 1000, 2), s.cycles, b]
                for s, b in zip(self.scrapes, busy, strict=True)
            ],
        }


def dumps(data: dict[str, Any]) -> str:
    """Indented JSON with each list of numbers on one line: 600 scrapes stay 600 lines, not 3,000."""
    return FLAT_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m[1]) + "]", json.dumps(data, indent=2))


def write_config(directory: Path, interval: int) -> Path:
    """One site, snapshot only (the exporter acts on nothing), /metrics on a free loopback port."""
    settings = {
        "state_dir": str(directory),
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "sites": {SITE: {"cloud": "bench", "sweep_interval_seconds": interval}},
    }
    path = directory / "hammersmith.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def start_exporter(directory: Path, config: Path, clouds: Path) -> subprocess.Popen[bytes]:
    """The real CLI in its own process group, so a stuck one can be killed whole."""
    with (directory / "exporter.out").open("wb") as stdout, (directory / "exporter.err").open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "hammersmith", "--config", str(config), "exporter"],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=directory,
            env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def stop_exporter(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM (it finishes the cycle under way), then SIGKILL of its group if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


class Cycles:
    """What each cycle left in /metrics, taken from the first scrape that saw it recorded.

    The first scrape after a cycle lands in the pause before the next one (`interval` s, far longer
    than the scrape pause), so the api_requests_total it shows are exactly those of the cycles so far.
    """

    def __init__(self) -> None:
        self.seen: dict[int, dict[str, float]] = {}
        self.seen_at: dict[int, float] = {}

    def add(self, series: dict[str, float], at: float) -> None:
        """`at`: Unix time the scrape that returned `series` ended."""
        count = cycles(series)
        if count not in self.seen:
            self.seen[count], self.seen_at[count] = series, at

    def deltas(self) -> list[dict[str, int]]:
        """Requests per service of each cycle whose predecessor was also seen."""
        out = []
        for count in sorted(self.seen):
            if count - 1 in self.seen and count > 1:
                now = per_service(self.seen[count], "hammersmith_api_requests_total")
                before = per_service(self.seen[count - 1], "hammersmith_api_requests_total")
                out.append({s: n - before.get(s, 0) for s, n in sorted(now.items())})
        return out

    def durations(self) -> list[float]:
        return [
            round(s.get(f'hammersmith_snapshot_duration_seconds{{site="{SITE}"}}', 0.0), 3)
            for count, s in sorted(self.seen.items())
            if count > 0
        ]

    def windows(self, interval: int, until: float) -> list[tuple[float, float]]:
        """From each cycle's snapshot start until RENDER_MARGIN after a scrape showed it: when scrapes compete with it.

        The cycle still running at `until` is not in /metrics yet: it began at the latest one's end
        plus `interval` (a little later, by its checks and recording: so this window errs wide).
        """
        start, duration = (
            f'hammersmith_snapshot_{what}_seconds{{site="{SITE}"}}' for what in ("timestamp", "duration")
        )
        done = [(s[start], s[duration], self.seen_at[n]) for n, s in sorted(self.seen.items()) if n > 0 and start in s]
        windows = [(began, seen + RENDER_MARGIN) for began, _, seen in done]
        if done and (running := done[-1][0] + done[-1][1] + interval) < until:
            windows.append((running, until))
        return windows


def wait_first_cycle(
    proc: subprocess.Popen[bytes], http: httpx.Client, seen: Cycles, timeout: float
) -> dict[str, float]:
    """Poll /metrics until the bench site has an ok cycle; give up if the exporter exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exporter exited with {proc.returncode} before its first cycle")
        try:
            response = http.get("/metrics")
        except httpx.TransportError:  # not listening yet
            response = None
        if response is not None and response.status_code == 200:
            series = watched(response.content)
            seen.add(series, time.time())
            if cycles(series, "ok") >= 1:
                return series
        time.sleep(0.5)
    raise RuntimeError(f"no ok cycle within {timeout:.0f} s")


def scrape(
    result: Result, proc: subprocess.Popen[bytes], http: httpx.Client, seen: Cycles, count: int
) -> dict[str, float]:
    """`count` timed sequential scrapes with a fixed pause; returns the series of the last good one."""
    last: dict[str, float] = {}
    first_cpu: float | None = None
    for i in range(count):
        at, started = time.time(), time.perf_counter()
        try:
            response = http.get("/metrics")
            body = response.content
        except httpx.HTTPError as exc:
            result.failures.append(f"scrape {i}: {type(exc).__name__}: {exc}")
            if proc.poll() is not None:
                result.failures.append(f"exporter exited with {proc.returncode}")
                break
            continue
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            result.failures.append(f"scrape {i}: HTTP {response.status_code}")
            continue
        last = watched(body)
        seen.add(last, at + elapsed)
        first_cpu = last.get("process_cpu_seconds_total", 0.0) if first_cpu is None else first_cpu
        result.scrapes.append(Scrape(at, elapsed, cycles(last)))
        result.body_bytes, result.samples = len(body), samples(body)
        result.content_encoding = response.headers.get("content-encoding")
        time.sleep(result.pause_seconds)
    if last and first_cpu is not None:
        result.exporter_cpu_seconds = round(last.get("process_cpu_seconds_total", 0.0) - first_cpu, 2)
    return last


def measure(size: int, scrapes: int, interval: int, console: Console) -> Result:
    """Fresh Ironic, seed, baseline, then the exporter subprocess scraped; everything stopped by PID after."""
    result = Result(size, loadavg_before=os.getloadavg())
    with tempfile.TemporaryDirectory(prefix=f"hammersmith-exporter-{size}-") as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        with seeded_ironic(directory, size) as state:
            result.seed_seconds = round(time.perf_counter() - t0, 2)
            console.log(f"N={size}: Ironic on {state.url} seeded in {result.seed_seconds} s")
            clouds = write_clouds(directory, state.url)
            with httpx.Client(base_url=state.url, headers=HEADERS, timeout=120.0) as ironic:
                baseline(ironic)  # warm-up: connections, Ironic's caches
                for _ in range(BASELINE_RUNS):
                    t0 = time.perf_counter()
                    counts, result.baseline_requests = baseline(ironic)
                    result.baseline_seconds.append(round(time.perf_counter() - t0, 4))
                    if counts != {"nodes": size, "ports": size}:
                        result.problems.append(f"baseline listed {counts}, expected {size} of each")
            console.log(f"N={size}: baseline {result.baseline_median:.3f} s ({result.baseline_requests} requests)")

            config = write_config(directory, interval)
            listen = yaml.safe_load(config.read_text())["http"]["listen"]
            proc = start_exporter(directory, config, clouds)
            try:
                with httpx.Client(base_url=f"http://{listen}", timeout=30.0) as http:
                    seen = Cycles()
                    t0 = time.perf_counter()
                    first = wait_first_cycle(proc, http, seen, FIRST_CYCLE_TIMEOUT)
                    result.first_cycle_seconds = round(time.perf_counter() - t0, 2)
                    snapshot = first.get(f'hammersmith_snapshot_duration_seconds{{site="{SITE}"}}', 0.0)
                    # a cycle is the snapshot, then `interval` s of waiting
                    result.pause_seconds = round(CYCLES_SPANNED * (interval + snapshot) / scrapes, 3)
                    console.log(
                        f"N={size}: exporter PID {proc.pid} on {listen}, first cycle after "
                        f"{result.first_cycle_seconds} s (snapshot {snapshot:.2f} s); "
                        f"{scrapes} scrapes, {result.pause_seconds * 1000:.0f} ms apart"
                    )
                    last = scrape(result, proc, http, seen, scrapes)
                result.snapshot_requests = per_service(last, "hammersmith_snapshot_requests")
                result.cycle_requests = seen.deltas()
                result.snapshot_seconds = seen.durations()
                result.cycle_windows = seen.windows(interval, time.time())
                result.render_sum = round(last.get("hammersmith_exporter_scrape_duration_seconds_sum", 0.0), 4)
                result.render_count = int(last.get("hammersmith_exporter_scrape_duration_seconds_count", 0))
                result.slow_renders = result.render_count - int(last.get(SLOW_RENDER_BUCKET, 0))
                result.exporter_rss_bytes = int(last.get("process_resident_memory_bytes", 0))
                result.cycle_results = {r: cycles(last, r) for r in ("ok", "incomplete", "failed")}
                console.log(f"N={size}: {result.cycles_during} cycle(s) during the scrapes")
            except Exception as exc:  # still stop everything and report what was measured
                result.problems.append(f"{type(exc).__name__}: {exc}")
            finally:
                result.exporter_exit = stop_exporter(proc)
                result.exporter_stderr_tail = (directory / "exporter.err").read_text()[-2000:]
    result.loadavg_after = os.getloadavg()
    check(result)
    return result


def check(result: Result) -> None:
    """Incomplete or failed cycles and failed scrapes are failures; fewer cycles than intended is a note."""
    for what in ("incomplete", "failed"):
        if result.cycle_results.get(what):
            result.problems.append(f"{result.cycle_results[what]} {what} cycle(s)")
    result.problems.extend(result.failures)
    if result.cycles_during < 2:
        result.problems.append(f"only {result.cycles_during} cycle(s) during the scrapes (wanted 2)")
    if result.exporter_exit != 0:
        result.problems.append(f"exporter exit status {result.exporter_exit} (0 expected after SIGTERM)")


def failed(result: Result) -> bool:
    """What makes the exit status 1: an incomplete or failed cycle, a scrape that was not a 200, no scrape at all."""
    return bool(
        result.failures
        or not result.scrapes
        or result.cycle_results.get("incomplete")
        or result.cycle_results.get("failed")
    )


def report(results: list[Result], args: argparse.Namespace, console: Console) -> None:
    """Two tables (what a scrape costs, what a cycle costs), then the targets to compare against."""
    scrapes = Table(
        title=f"GET /metrics: {args.scrapes} sequential scrapes, keep-alive ({os.cpu_count()} CPUs); "
        "baseline: the raw node + port lists"
    )
    for column in ("N", "p50 ms", "p99 ms", "max ms", "body MB", "samples", "baseline s", "baseline / p99"):
        scrapes.add_column(column, justify="right")
    cycles_table = Table(title=f"collection cycles (sweep every {args.interval} s)")
    for column in (
        "N",
        "req/cycle: snapshot",
        "req/cycle: Δ api_requests",
        "expected",
        "cycles in scrapes",
        "snapshot s",
        "render mean ms",
        "renders > 0.1 s",
        "exporter CPU s",
    ):
        cycles_table.add_column(column, justify="right")
    for r in results:
        if not r.scrapes:
            scrapes.add_row(f"{r.size:,}", *["-"] * 7)
            continue
        scrapes.add_row(
            f"{r.size:,}",
            f"{r.p50 * 1000:.1f}",
            f"{r.p99 * 1000:.1f}",
            f"{max(r.latencies) * 1000:.1f}",
            f"{r.body_bytes / 1e6:.2f}",
            f"{r.samples:,}",
            f"{r.baseline_median:.3f}",
            f"{r.baseline_median / r.p99:,.0f}x",
        )
        deltas = sorted({", ".join(f"{s} {n}" for s, n in d.items()) for d in r.cycle_requests})
        cycles_table.add_row(
            f"{r.size:,}",
            ", ".join(f"{s} {n}" for s, n in sorted(r.snapshot_requests.items())),
            " | ".join(deltas) or "-",
            str(r.expected_requests),
            str(r.cycles_during),
            ", ".join(f"{s:.2f}" for s in r.snapshot_seconds),
            f"{r.render_sum / r.render_count * 1000:.1f}" if r.render_count else "-",
            f"{r.slow_renders} of {r.render_count}",
            f"{r.exporter_cpu_seconds:.1f}",
        )
    console.print(scrapes)
    console.print(cycles_table)
    for r in results:
        if r.size == TARGET_SIZE and r.scrapes:
            verdict = "met" if r.p99 < TARGET_P99 else "[red]MISSED[/red]"
            console.print(f"target p99 < {TARGET_P99 * 1000:.0f} ms at {TARGET_SIZE:,} nodes: {verdict}")
    console.print(
        "target requests per cycle constant but for pages: expected 3 + 2 x floor(N/1000) "
        "(nodes, ports, allocations, plus a page per 1,000 nodes and ports)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated node counts")
    parser.add_argument("--scrapes", type=int, default=300, help="timed scrapes per size")
    parser.add_argument("--interval", type=int, default=10, help="the site's sweep_interval_seconds (at least 5)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    console = Console()
    ensure_venv()
    started, loadavg_before = datetime.now(UTC), os.getloadavg()
    results = [measure(size, max(2, args.scrapes), args.interval, console) for size in sizes]
    report(results, args, console)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        dumps(
            {
                "started_at": started.isoformat(),
                "scrapes": args.scrapes,
                "interval": args.interval,
                "machine": machine(),
                "loadavg_before": loadavg_before,
                "loadavg_after": os.getloadavg(),
                "results": [r.to_json() for r in results],
            }
        )
        + "\n"
    )
    console.log(f"wrote {RESULTS}")
    for r in results:
        for problem in dict.fromkeys(r.problems):
            console.print(f"[red]N={r.size}: {problem}[/red]")
    return 1 if any(failed(r) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
