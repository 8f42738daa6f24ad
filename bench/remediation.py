"""Benchmark: time from a known fault to a fixed node, with the `hammersmith run` agent on a real Ironic.

    .venv/bin/python bench/remediation.py [--nodes 100] [--faults 10] [--interval 10]

A fresh testbed Ironic gets `--nodes` nodes through the API; on the healthy fleet the cost of an
observe-mode sweep is compared with a bare snapshot (in-process, one connection, alternated).
Then the agent runs as a subprocess with the fixing hammers in `apply`; after its first idle
sweep, `--faults` faults (error-teardown, deploy-failed, clean-failed) are injected and Ironic
is polled until every broken node is `available` again. Per node: time from its injection call
returning to the first poll that sees it available, split with the agent's ledger into waiting
for a sweep, the sweep reaching it, the API call and Ironic's own tear down + clean.

Prints a table, writes bench/results/remediation.json; exits 1 if a node was not fixed in time
or an injection failed. Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from common import machine  # bench/ is the script directory, so this is bench/common.py
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from hammersmith import config
from hammersmith.cloud import snapshot
from hammersmith.react.sweep import Sweeper
from hammersmith.store import Store, open_store
from hammersmith.store.models import Sweep
from hammersmith.testbed import fleet, lifecycle
from hammersmith.testbed.ironic import CLOUD_NAME, State, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "remediation.json"
SITE = "lab"
#: share of the injected faults, in injection order (error-resetter fixes the first two, clean-failed the last)
MIX = (("error-teardown", 0.4), ("deploy-failed", 0.3), ("clean-failed", 0.3))
POLL = 0.5
FIX_TIMEOUT = 180.0
REPEAT = 5


@dataclass
class Node:
    """One broken node's timeline, in seconds of this process's monotonic clock."""

    name: str
    fault: str
    injected_from: float  # its inject call started: the node broke after this
    injected: float  # its inject call returned: the (conservative) start of time-to-fixed
    fixed: float | None = None  # first poll that saw it `available`
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        return None if self.fixed is None else self.fixed - self.injected


def nearest_rank(values: list[float], percent: float) -> float:
    """The smallest value with at least `percent` % of the values at or below it (no interpolation)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def quiet_step(description: str, total: int | None) -> Callable[[int], None]:
    """`lifecycle.up` reports progress through this; the bench logs only the total."""
    return lambda done: None


def split(total: int) -> list[tuple[str, int]]:
    """`total` faults over the mix by largest remainder: 10 -> 4 error-teardown, 3 deploy-failed, 3 clean-failed."""
    exact = {fault: round(share * total, 6) for fault, share in MIX}
    counts = {fault: int(x) for fault, x in exact.items()}
    for fault in sorted(exact, key=lambda f: exact[f] - counts[f], reverse=True)[: total - sum(counts.values())]:
        counts[fault] += 1
    return [(fault, counts[fault]) for fault, _ in MIX if counts[fault]]


def write_config(directory: Path, interval: int) -> Path:
    """The agent's config: the fixing hammers in apply, no grace, a breaker and rate that let 10 % through."""
    site = {
        "cloud": CLOUD_NAME,
        "sweep_interval_seconds": interval,
        "policy": {
            "grace_minutes": 0,
            # stale-inspection off: every node of a fresh fleet was never inspected, it would plan on all of them
            "hammers": {
                "error-resetter": "apply",
                "clean-failed": "apply",
                "stuck-transient": "apply",
                "stale-inspection": "off",
            },
            "breaker": {"max_actions": 20},
            "rate": {"per_sweep": 10},
        },
    }
    path = directory / "hammersmith.yaml"
    settings = {"state_dir": str(directory), "http": {"listen": "127.0.0.1:0"}, "sites": {SITE: site}}
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def sweep_cost(settings: config.Settings, store: Store) -> dict[str, Any]:
    """Median wall time of an observe-mode sweep and of a bare snapshot, alternated on one connection."""
    sweeper = Sweeper(settings, SITE, store)
    times: dict[str, list[float]] = {"snapshot": [], "sweep": []}
    cpu: dict[str, list[float]] = {"snapshot": [], "sweep": []}
    findings = 0
    try:
        snapshot.take(sweeper.connection)  # warm-up: connection pool, lazy imports, Ironic's caches
        sweeper.sweep(apply=False)
        for _ in range(REPEAT):
            for what, run in (
                ("snapshot", lambda: snapshot.take(sweeper.connection)),
                ("sweep", lambda: sweeper.sweep(apply=False)),
            ):
                t0, c0 = time.perf_counter(), time.process_time()
                out = run()
                times[what].append(time.perf_counter() - t0)
                cpu[what].append(time.process_time() - c0)
                if what == "sweep":
                    findings += len(out.findings)
    finally:
        sweeper.close()
    medians = {what: statistics.median(v) for what, v in times.items()}
    return {
        "runs": REPEAT,
        "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "cpu_seconds": {k: [round(x, 4) for x in v] for k, v in cpu.items()},
        "snapshot_median": round(medians["snapshot"], 4),
        "sweep_median": round(medians["sweep"], 4),
        "ratio": round(medians["sweep"] / medians["snapshot"], 3),
        "findings": findings,
    }


def summaries(path: Path) -> list[dict[str, Any]]:
    """The agent's per-sweep JSON summaries (pretty-printed: each top-level object opens at column 0)."""
    text, found, decoder = path.read_text(), [], json.JSONDecoder()
    for match in re.finditer(r"^\{", text, re.M):
        try:
            found.append(decoder.raw_decode(text, match.start())[0])
        except json.JSONDecodeError:  # still being written
            break
    return found


def wait_first_sweep(agent: subprocess.Popen[bytes], out: Path, timeout: float = 120) -> dict[str, Any]:
    """Inject only once the agent has swept the healthy fleet: it is up, connected, and between sweeps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := summaries(out):
            return found[0]
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited with {agent.returncode} before its first sweep")
        time.sleep(0.1)
    raise RuntimeError(f"no sweep from the agent within {timeout:.0f} s")


def poll_fixed(state: State, broken: dict[str, Node], timeout: float) -> dict[str, str]:
    """One light list call every POLL s until every broken node is available; the states of those that are not."""
    conn = fleet.connect(state)
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while True:
        seen = time.monotonic()
        last = {n["name"]: n["provision_state"] for n in fleet.list_nodes(conn, light=True) if n["name"] in broken}
        for name, state in last.items():
            if state == "available" and broken[name].fixed is None:
                broken[name].fixed = seen
        if all(n.fixed is not None for n in broken.values()) or time.monotonic() > deadline:
            return {name: last.get(name, "?") for name, n in broken.items() if n.fixed is None}
        time.sleep(POLL)


def ledger_phases(store: Store, broken: dict[str, Node], offset: float) -> list[dict[str, Any]]:
    """Split each fixed node's time with the agent's ledger; return the agent's sweeps (monotonic times).

    `offset` turns the ledger's UTC wall-clock times into this process's monotonic clock.
    """
    with store.session() as session:
        rows = session.scalars(select(Sweep).where(Sweep.site == SITE).order_by(Sweep.id))
        sweeps = [
            {
                "start": r.started_at.timestamp() - offset,
                "end": r.finished_at.timestamp() - offset,
                "ok": r.ok,
                "summary": r.summary,
            }
            for r in rows
        ]
    for node in broken.values():
        acted = [
            (a.started_at.timestamp() - offset, (a.finished_at or a.started_at).timestamp() - offset)
            for a in store.actions(site=SITE, node=node.name)
            if a.outcome == "succeeded" and a.started_at
        ]
        if not acted or node.fixed is None:
            continue
        started, finished = min(acted)
        sweep = next((s for s in sweeps if s["start"] <= started <= s["end"]), None)
        if sweep is None:
            continue
        node.phases = {
            "wait_for_sweep": sweep["start"] - node.injected,  # < 0: a sweep already running when the call returned
            "sweep_to_action": started - sweep["start"],  # snapshot, detection, earlier actions in that sweep
            "api_call": finished - started,  # lock, re-check, the call(s), read back
            "ironic": node.fixed - finished,  # tear down and automated clean, plus up to one poll
        }
    return sweeps


def server_errors(log: Path) -> list[str]:
    """Requests Ironic's API answered with 5xx, to explain a sweep that skipped its hammers (incomplete snapshot).

    A connection the server dropped under the client never reaches this log; the sweep's `skipped` shows those.
    """
    if not log.exists():
        return []
    pattern = re.compile(r"^(\S+ \S+) .* ironic\.api .* - (\w+ \S+) - (5\d\d) ")
    return [" ".join(m.groups()) for line in log.read_text().splitlines() if (m := pattern.match(line))]


def stop_agent(agent: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as an operator's service manager would; kill only if it does not stop within a minute."""
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)  # finishes the sweep under way, then exits
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(10)
    return agent.returncode


def measure(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """One fresh testbed: sweep cost on the healthy fleet, then faults under the running agent; always torn down."""
    out: dict[str, Any] = {"problems": [], "notes": []}
    with tempfile.TemporaryDirectory(prefix="hammersmith-remediation-") as tmp:
        workdir = Path(tmp)
        agent: subprocess.Popen[bytes] | None = None
        try:
            t0 = time.perf_counter()
            state = lifecycle.up(workdir, args.nodes, free_port(), quiet_step)
            out["up_seconds"] = round(time.perf_counter() - t0, 1)
            console.log(f"Ironic on {state.url}, {args.nodes} nodes available in {out['up_seconds']} s")
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(workdir / "clouds.yaml")
            settings = config.load(write_config(workdir, args.interval))

            # the sweep's own cost, on the healthy fleet, before the agent exists (nothing else asks Ironic)
            bench_store = open_store(f"sqlite:///{workdir / 'sweep-cost.sqlite'}")
            try:
                out["sweep_cost"] = sweep_cost(settings, bench_store)
            finally:
                bench_store.close()
            cost = out["sweep_cost"]
            console.log(
                f"sweep {cost['sweep_median']:.3f} s vs snapshot {cost['snapshot_median']:.3f} s (x{cost['ratio']:.2f})"
            )

            agent_out = workdir / "agent.out"
            with agent_out.open("wb") as stdout, (workdir / "agent.err").open("wb") as stderr:
                agent = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "hammersmith",
                        "--config",
                        str(workdir / "hammersmith.yaml"),
                        "run",
                        "--json",
                    ],
                    stdout=stdout,
                    stderr=stderr,
                    stdin=subprocess.DEVNULL,
                    cwd=workdir,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},  # summaries appear as each sweep ends
                )
            out["idle_sweep"] = wait_first_sweep(agent, agent_out)
            console.log(f"agent PID {agent.pid}: idle sweep done, injecting {args.faults} faults")

            broken: dict[str, Node] = {}
            inject_started = time.monotonic()
            try:
                for fault, count in split(args.faults):
                    before = time.monotonic()
                    names = lifecycle.inject(workdir, fault, count=count)
                    after = time.monotonic()
                    broken.update({n: Node(n, fault, before, after) for n in names})
                    console.log(f"{fault} x{count} in {after - before:.1f} s")
            except Exception as exc:  # e.g. the agent acted on a node mid-fixture; report, still time the rest
                out["problems"].append(f"injection failed: {exc}")
                console.print(f"[red]injection failed: {exc}[/red]")
            out["inject_seconds"] = round(time.monotonic() - inject_started, 1)

            unfixed = poll_fixed(state, broken, FIX_TIMEOUT) if broken else {}
            if unfixed:
                out["problems"].append(f"not available after {FIX_TIMEOUT:.0f} s: {unfixed}")
            offset = time.time() - time.monotonic()
            out["agent_exit"] = stop_agent(agent)
            if out["agent_exit"] != 0:
                out["problems"].append(f"agent exited with {out['agent_exit']}")
            agent_store = open_store(settings.effective_store_url, settings.state_dir)
            try:
                sweeps = ledger_phases(agent_store, broken, offset)
                outcomes = Counter((a.hammer, a.outcome) for a in agent_store.actions(site=SITE, limit=10_000))
            finally:
                agent_store.close()
            out["agent_sweeps"] = len(summaries(agent_out))
            out["agent_stderr"] = (workdir / "agent.err").read_text()[-2000:]
            out["ironic_5xx"] = server_errors(lifecycle.testbed_dir(workdir) / "ironic.log")
            for s in sweeps:
                if not s["ok"] or s["summary"].get("skipped"):
                    out["notes"].append(f"a sweep had an incomplete snapshot: {s['summary'].get('skipped')}")
            if out["ironic_5xx"]:
                out["notes"].append(f"Ironic answered {len(out['ironic_5xx'])} request(s) with 5xx")
            out["ledger_sweeps"] = [
                {
                    "start": round(s["start"] - inject_started, 2),
                    "seconds": round(s["end"] - s["start"], 2),
                    "ok": s["ok"],
                    **s["summary"],
                }
                for s in sweeps
            ]
            out["ledger_outcomes"] = {f"{h} {o}": n for (h, o), n in sorted(outcomes.items())}
            out["nodes"] = [
                {
                    **asdict(n),
                    "injected_from": round(n.injected_from - inject_started, 2),
                    "injected": round(n.injected - inject_started, 2),
                    "fixed": None if n.fixed is None else round(n.fixed - inject_started, 2),
                    "seconds": None if n.seconds is None else round(n.seconds, 2),
                    "upper_bound_seconds": None if n.fixed is None else round(n.fixed - n.injected_from, 2),
                    "phases": {k: round(v, 2) for k, v in n.phases.items()},
                }
                for n in sorted(broken.values(), key=lambda n: n.name)
            ]
            fixed = [n.seconds for n in broken.values() if n.seconds is not None]
            if fixed:
                out["time_to_fixed"] = {
                    "n": len(fixed),
                    "p50": round(nearest_rank(fixed, 50), 2),
                    "p95": round(nearest_rank(fixed, 95), 2),
                    "max": round(max(fixed), 2),
                    "mean": round(statistics.mean(fixed), 2),
                }
            phases = [n.phases for n in broken.values() if n.phases]
            out["phase_medians"] = (
                {k: round(statistics.median(p[k] for p in phases), 2) for k in phases[0]} if phases else {}
            )
        finally:
            if agent is not None:
                stop_agent(agent)
            lifecycle.down(workdir)
    return out


def report(out: dict[str, Any], args: argparse.Namespace, console: Console) -> None:
    """Per node, slowest last, then the figures the issue's target is about."""
    table = Table(title=f"time to fixed: {args.faults} faults in {args.nodes} nodes, sweep every {args.interval} s")
    for column in ("node", "fault", "fixed after s", "wait", "to action", "call", "Ironic"):
        table.add_column(column, justify="right")
    for n in sorted(out.get("nodes", []), key=lambda n: n["seconds"] if n["seconds"] is not None else math.inf):
        p = n["phases"]
        table.add_row(
            n["name"],
            n["fault"],
            "-" if n["seconds"] is None else f"{n['seconds']:.1f}",
            *(f"{p[k]:.1f}" if k in p else "-" for k in ("wait_for_sweep", "sweep_to_action", "api_call", "ironic")),
        )
    console.print(table)
    console.print(
        "wait: until the sweep that acted began; to action: that sweep's snapshot, detection and earlier actions; "
        "call: lock, re-check, API call(s); Ironic: until a poll saw it available"
    )
    summary = Table(title="summary")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    if ttf := out.get("time_to_fixed"):
        summary.add_row(
            "time to fixed p50 / p95 / max (nearest rank)", f"{ttf['p50']:.1f} / {ttf['p95']:.1f} / {ttf['max']:.1f} s"
        )
    summary.add_row("phase medians", ", ".join(f"{k} {v:.1f}" for k, v in out.get("phase_medians", {}).items()))
    summary.add_row("agent sweeps (JSON lines)", str(out.get("agent_sweeps", "-")))
    summary.add_row("injection took", f"{out.get('inject_seconds', '-')} s")
    if cost := out.get("sweep_cost"):
        summary.add_row(
            "observe sweep / snapshot (median)",
            f"{cost['sweep_median']:.3f} / {cost['snapshot_median']:.3f} s = x{cost['ratio']:.2f}",
        )
    console.print(summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument(
        "--faults", type=int, default=10, help="spread 4:3:3 over error-teardown, deploy-failed, clean-failed"
    )
    parser.add_argument("--interval", type=int, default=10, help="the agent's sweep_interval_seconds (>= 5)")
    args = parser.parse_args(argv)
    console = Console()
    started = datetime.now(UTC)
    out = measure(args, console)
    report(out, args, console)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "started_at": started.isoformat(),
                "args": vars(args),
                "machine": machine(),
                **out,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    console.log(f"wrote {RESULTS}")
    for note in out["notes"]:
        console.print(f"[yellow]{note}[/yellow]")
    for problem in out["problems"]:
        console.print(f"[red]{problem}[/red]")
    return 1 if out["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
