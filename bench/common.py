"""What the benchmarks share: the machine they ran on, a freshly seeded real Ironic, and the raw-read baseline."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import seed  # bench/ is the script directory, so this is bench/seed.py

from hammersmith.cloud.snapshot import IRONIC_MICROVERSION
from hammersmith.testbed.ironic import IRONIC_VERSION, Ironic, State, free_port

PAGE = 1000
HEADERS = {"X-OpenStack-Ironic-API-Version": IRONIC_MICROVERSION}


def machine() -> dict[str, Any]:
    """So figures can be compared honestly: same CPUs, same Ironic, how busy the machine was."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ironic": IRONIC_VERSION,
        "loadavg_at_end": os.getloadavg(),
    }


@contextmanager
def seeded_ironic(directory: Path, size: int) -> Iterator[State]:
    """A fresh real Ironic on a free port with exactly `size` nodes and ports (bench/seed.py); stopped by PID after."""
    ironic, port = Ironic(directory), free_port()
    ironic.create_schema(port)
    state = State(port=port)
    try:
        ironic.start(state)
        seed.seed(ironic, state, size)
        yield state
    finally:
        ironic.stop(state)


def write_clouds(directory: Path, url: str) -> Path:
    """A noauth clouds.yaml cloud `bench` pointing at `url`: no Keystone, no version discovery."""
    clouds = directory / "clouds.yaml"
    clouds.write_text(
        f"clouds:\n  bench:\n    auth_type: none\n    baremetal_endpoint_override: {url}\n"
        f'    baremetal_api_version: "1"\n'
    )
    return clouds


def baseline(http: httpx.Client) -> tuple[dict[str, int], int]:
    """The floor: what any client must do to read nodes and ports -- one page after another."""
    counts: dict[str, int] = {}
    requests = 0
    for resource in ("nodes", "ports"):
        counts[resource], url = 0, f"/v1/{resource}/detail?limit={PAGE}"
        while url:
            body = http.get(url).raise_for_status().json()
            requests += 1
            counts[resource] += len(body[resource])
            url = body.get("next")
    return counts, requests


def finish(console: Any, results: Path, run: dict[str, Any], out: dict[str, Any]) -> int:
    """Write a bench's JSON result (`run`: when and with what, `out`: what it measured), print its notes and
    problems, and return the exit status: 1 when any problem was found."""
    results.parent.mkdir(exist_ok=True)
    default = lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)  # noqa: E731
    results.write_text(json.dumps({**run, "machine": machine(), **out}, indent=2, default=default) + "\n")
    console.log(f"wrote {results}")
    for note in out["notes"]:
        console.print(f"[yellow]{note}[/yellow]")
    for problem in out["problems"]:
        console.print(f"[red]{problem}[/red]")
    return 1 if out["problems"] else 0
