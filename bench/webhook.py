"""Benchmark: the Alertmanager webhook of a running `hammersmith run` agent, under a burst with duplicates.

    .venv/bin/python bench/webhook.py [--alerts 1000] [--copies 3] [--workers 32] [--broken 10]

A fresh testbed Ironic (30 nodes, `--broken` of them in `error` after a failed tear down) and the agent
as a subprocess, with `IronicNodeError` mapped to error-resetter in *observe* mode: every incident the
agent opens runs the whole path (live node and ports re-read, matches, plan, safety layer, budget, rate)
and writes one `observed` ledger row with trigger `alertmanager` -- measurable, and no node changes, so
every alert still matches when its turn comes. `--alerts` distinct alerts (own fingerprint and startsAt,
node round-robin over the broken ones), each POSTed `--copies` times as its own delivery, all shuffled
and sent concurrently from `--workers` threads over keep-alive connections.

Reports accepted per second (wall time of the burst), p50/p99/max response time, then -- once the worker
has drained the queue -- incidents created, ledger actions with trigger alertmanager (must equal the
distinct alerts), duplicates recorded (must be alerts x (copies - 1)), and the drain time. Writes
bench/results/webhook.json; exits 1 if a count is off or a POST was not answered 200.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from common import machine  # bench/ is the script directory, so this is bench/common.py
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from hammersmith.store import open_store
from hammersmith.store.models import Action, Incident, IncidentEvent, WebhookDelivery
from hammersmith.testbed import lifecycle
from hammersmith.testbed.ironic import CLOUD_NAME, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "webhook.json"
SITE = "lab"
TOKEN = "bench-webhook-token-0123456789"
DRAIN_TIMEOUT = 900.0


def quiet_step(description: str, total: int | None) -> Callable[[int], None]:
    return lambda done: None


def write_config(directory: Path, port: int) -> Path:
    site = {
        "cloud": CLOUD_NAME,
        "sweep_interval_seconds": 3600,  # one sweep at start; the burst is the webhook's
        "alerts": {"IronicNodeError": "error-resetter"},
        "policy": {"grace_minutes": 0, "hammers": {"error-resetter": "observe", "stale-inspection": "off"}},
    }
    settings = {
        "state_dir": str(directory),
        "http": {"listen": f"127.0.0.1:{port}", "webhook_token": TOKEN},
        "sites": {SITE: site},
    }
    path = directory / "hammersmith.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def body(index: int, node: str) -> dict[str, Any]:
    starts = datetime(2026, 11, 25, tzinfo=UTC) + timedelta(seconds=index)
    alert = {
        "status": "firing",
        "labels": {"alertname": "IronicNodeError", "severity": "critical", "site": SITE, "node": node},
        "annotations": {"summary": f"{node} in error", "runbook_url": "http://agent/runbooks/IronicNodeError"},
        "startsAt": starts.isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": f"{index:016x}",
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="IronicNodeError", node="{node}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "hammersmith",
        "groupLabels": {"alertname": "IronicNodeError"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


def burst(url: str, bodies: list[bytes], workers: int) -> tuple[float, list[float], Counter[int]]:
    """POST every body concurrently; wall time, per-request seconds, status codes."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(limits=limits, timeout=30) as client:

        def post(content: bytes) -> tuple[float, int]:
            started = time.perf_counter()
            try:
                code = client.post(url, content=content, headers=headers).status_code
            except httpx.HTTPError:
                code = 0
            return time.perf_counter() - started, code

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(post, bodies))
        wall = time.perf_counter() - started
    return wall, [r[0] for r in results], Counter(r[1] for r in results)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    out: dict[str, Any] = {"problems": []}
    with tempfile.TemporaryDirectory(prefix="hammersmith-webhook-") as tmp:
        workdir = Path(tmp)
        agent: subprocess.Popen[bytes] | None = None
        try:
            lifecycle.up(workdir, 30, free_port(), quiet_step)
            broken = sorted(lifecycle.inject(workdir, "error-teardown", count=args.broken))
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(workdir / "clouds.yaml")
            port = free_port()
            config = write_config(workdir, port)
            base = f"http://127.0.0.1:{port}"
            with (workdir / "agent.err").open("wb") as stderr:
                agent = subprocess.Popen(
                    [sys.executable, "-m", "hammersmith", "--config", str(config), "run", "--json"],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    stdin=subprocess.DEVNULL,
                    cwd=workdir,
                )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise RuntimeError("the agent did not start:\n" + (workdir / "agent.err").read_text()[-2000:])
            watcher = open_store(f"sqlite:///{workdir / 'hammersmith.sqlite'}")
            try:  # the agent's first sweep runs at start: the burst measures the webhook, not that sweep
                while watcher.last_sweep(SITE, ok_only=False) is None and time.monotonic() < deadline + 60:
                    time.sleep(0.2)
            finally:
                watcher.close()
            console.log(f"agent PID {agent.pid} on {base}; {len(broken)} broken nodes; sending the burst")
            distinct = [json.dumps(body(i, broken[i % len(broken)])).encode() for i in range(args.alerts)]
            bodies = distinct * args.copies
            random.Random(6).shuffle(bodies)
            wall, latencies, codes = burst(f"{base}/api/v1/alertmanager", bodies, args.workers)
            out["burst"] = {
                "posts": len(bodies),
                "wall_seconds": round(wall, 3),
                "accepted_per_second": round(codes[200] / wall, 1),
                "p50_ms": round(1000 * statistics.median(latencies), 2),
                "p99_ms": round(1000 * percentile(latencies, 0.99), 2),
                "max_ms": round(1000 * max(latencies), 2),
                "codes": {str(k): v for k, v in sorted(codes.items())},
            }
            console.log(f"burst: {out['burst']}")

            store = open_store(f"sqlite:///{workdir / 'hammersmith.sqlite'}")
            try:
                t0 = time.monotonic()
                left = len(store.unprocessed_deliveries())
                while left and time.monotonic() - t0 < DRAIN_TIMEOUT:
                    time.sleep(0.5)
                    left = len(store.unprocessed_deliveries())
                with store.session() as session:
                    first, last = session.execute(
                        select(func.min(WebhookDelivery.received_at), func.max(WebhookDelivery.processed_at))
                    ).one()
                    incidents = session.scalar(select(func.count()).select_from(Incident)) or 0
                    actions = Counter(
                        dict(
                            session.execute(
                                select(Action.outcome, func.count())
                                .where(Action.trigger == "alertmanager")
                                .group_by(Action.outcome)
                            ).all()
                        )
                    )
                    events = Counter(
                        dict(
                            session.execute(select(IncidentEvent.kind, func.count()).group_by(IncidentEvent.kind)).all()
                        )
                    )
            finally:
                store.close()
            out["processing"] = {
                "unprocessed_left": left,
                "drain_seconds_from_first_post": round((last - first).total_seconds(), 1) if first and last else None,
                "incidents_created": incidents,
                "ledger_actions": sum(actions.values()),
                "ledger_outcomes": dict(actions),
                "timeline_events": dict(events),
                "duplicates_recorded": events.get("duplicate", 0),
            }
            console.log(f"processing: {out['processing']}")
            expected = {"incidents_created": args.alerts, "ledger_actions": args.alerts}
            expected["duplicates_recorded"] = args.alerts * (args.copies - 1)
            for key, want in expected.items():
                if out["processing"][key] != want:
                    out["problems"].append(f"{key}: {out['processing'][key]}, expected {want}")
            if codes[200] != len(bodies):
                out["problems"].append(f"answers other than 200: {dict(codes)}")
        finally:
            if agent is not None:
                agent.send_signal(signal.SIGTERM)
                try:
                    agent.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
            lifecycle.down(workdir)
    out["machine"] = machine()
    return out


def report(out: dict[str, Any], console: Console) -> None:
    table = Table(title="Alertmanager webhook: burst against `hammersmith run`")
    table.add_column("figure")
    table.add_column("value", justify="right")
    b, p = out["burst"], out["processing"]
    rows = [
        ("POSTs (alerts x copies)", b["posts"]),
        ("accepted per second", b["accepted_per_second"]),
        ("response p50 / p99 / max (ms)", f"{b['p50_ms']} / {b['p99_ms']} / {b['max_ms']}"),
        ("incidents created", p["incidents_created"]),
        ("ledger actions (trigger alertmanager)", p["ledger_actions"]),
        ("duplicates recorded", p["duplicates_recorded"]),
        ("drain: first POST -> last processed (s)", p["drain_seconds_from_first_post"]),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    for problem in out["problems"]:
        console.print(f"[bold red]problem:[/] {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--broken", type=int, default=10)
    args = parser.parse_args()
    console = Console()
    out = {"args": vars(args), **measure(args, console)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=str) + "\n")
    report(out, console)
    sys.exit(1 if out["problems"] else 0)


if __name__ == "__main__":
    main()
