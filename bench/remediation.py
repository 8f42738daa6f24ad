"""Benchmark: time from a known fault to a verified fix, and from an ineffective fix to escalation, with the
`hammersmith run` agent on a real Ironic.

    .venv/bin/python bench/remediation.py [--nodes 100] [--faults 10] [--interval 10] [--ineffective 2]

A fresh testbed Ironic gets `--nodes` nodes through the API; on the healthy fleet the cost of an
observe-mode sweep is compared with a bare snapshot (in-process, one connection, alternated).

Time to fixed: the agent runs as a subprocess with the fixing hammers in `apply` and no grace;
after its first idle sweep, `--faults` faults (error-teardown, deploy-failed, clean-failed-automated)
are injected. Per node: time from its injection call returning to its ledger row's `verified_at`
with outcome `fixed` (the agent saw the node settle and the fault gone), split with the ledger and
Ironic's API log into waiting for a sweep, the sweep reaching it, the API call, and Ironic's work
plus the verification. Ironic is polled too, as a cross-check: every node must end `available`.

Escalation: a second agent, with a grace period, gets `--ineffective` nodes with
teardown-keeps-failing. From its ledger and sweeps: the action verified `ineffective`, then the
`escalate` row; counted is how many sweeps after that grace period ended the escalation came.

Prints tables, writes bench/results/remediation.json; exits 1 if an injection failed, a node was
not verified fixed (and available) in time, or an ineffective fault was not escalated within
two sweeps after its grace period. Not a test: nothing here asserts on time.
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
from common import finish  # bench/ is the script directory, so this is bench/common.py
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from hammersmith import config
from hammersmith.cloud import snapshot
from hammersmith.react.sweep import Sweeper
from hammersmith.store import Store, open_store
from hammersmith.store.models import ActionRow, Sweep
from hammersmith.testbed import fleet, lifecycle
from hammersmith.testbed.ironic import CLOUD_NAME, State, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "remediation.json"
SITE = "lab"
#: share of the injected faults, in injection order (error-resetter fixes the first two, clean-failed the last)
MIX = (("error-teardown", 0.4), ("deploy-failed", 0.3), ("clean-failed-automated", 0.3))
#: every fix of it fails again: the action is verified ineffective and the node must be escalated
INEFFECTIVE = "teardown-keeps-failing"
#: the escalation agent's grace period: short, so the run stays short, but several sweeps long
GRACE_MINUTES = 0.5
#: the issue's target: escalated within this many sweeps after the grace period
ESCALATE_WITHIN = 2
POLL = 0.5
FIX_TIMEOUT = 180.0
ESCALATE_TIMEOUT = 360.0
REPEAT = 5
PROVISION_CALL = re.compile(r"^(\S+ \S+) .* ironic\.api .* - PUT /v1/nodes/([^/ ]+)/states/provision - 202 ")


@dataclass
class Node:
    """One broken node's timeline, in seconds of this process's monotonic clock."""

    name: str
    fault: str
    injected_from: float  # its inject call started: the node broke after this
    injected: float  # its inject call returned: the (conservative) start of time-to-fixed
    fixed: float | None = None  # its action's ledger row: `verified_at`, outcome `fixed`
    available: float | None = None  # first poll that saw it `available` (cross-check)
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
    """`total` faults over the mix by largest remainder: 10 -> 4 error-teardown, 3 deploy-failed, 3 clean-failed-...."""
    exact = {fault: round(share * total, 6) for fault, share in MIX}
    counts = {fault: int(x) for fault, x in exact.items()}
    for fault in sorted(exact, key=lambda f: exact[f] - counts[f], reverse=True)[: total - sum(counts.values())]:
        counts[fault] += 1
    return [(fault, counts[fault]) for fault, _ in MIX if counts[fault]]


def write_config(directory: Path, interval: int, grace_minutes: float = 0) -> Path:
    """The agent's config: the fixing hammers in apply, a breaker and rate that let 10 % through, no smoke."""
    site = {
        "cloud": CLOUD_NAME,
        "sweep_interval_seconds": interval,
        "policy": {
            "grace_minutes": grace_minutes,
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
        # no smoke scenarios: the expensive one deploys an available node, the very nodes the bench breaks
        "smoke": {"cheap_interval_seconds": 0, "expensive_interval_seconds": 0},
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


def start_agent(directory: Path) -> subprocess.Popen[bytes]:
    """`hammersmith run --json` on `directory`'s config, its output in agent.out / agent.err there."""
    with (directory / "agent.out").open("wb") as stdout, (directory / "agent.err").open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "hammersmith", "--config", str(directory / "hammersmith.yaml"), "run", "--json"],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=directory,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # summaries appear as each sweep ends
        )


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


def by_node(store: Store) -> dict[str, list[ActionRow]]:
    """The agent's apply-mode ledger rows per node name, oldest first."""
    rows: dict[str, list[ActionRow]] = {}
    for row in reversed(store.actions(site=SITE, limit=10_000)):
        if row.mode == "apply":
            rows.setdefault(row.node_name or row.node_uuid, []).append(row)
    return rows


def fixed_row(rows: list[ActionRow]) -> ActionRow | None:
    """The action verified `fixed`, if any (the first: later ones would be a second fault)."""
    return next((r for r in rows if r.outcome == "fixed" and r.verified_at and r.started_at), None)


def poll_fixed(state: State, store: Store, broken: dict[str, Node], offset: float, timeout: float) -> dict[str, str]:
    """Every POLL s one light node list and one ledger read, until each broken node's row is `fixed` and the node
    `available`; the state and ledger outcomes of those that are not."""
    conn = fleet.connect(state)
    deadline = time.monotonic() + timeout
    while True:
        seen = time.monotonic()
        last = {n["name"]: n["provision_state"] for n in fleet.list_nodes(conn, light=True) if n["name"] in broken}
        for name, provision_state in last.items():
            if provision_state == "available" and broken[name].available is None:
                broken[name].available = seen
        ledger = by_node(store)
        for name, node in broken.items():
            if node.fixed is None and (row := fixed_row(ledger.get(name, []))) and row.verified_at:
                node.fixed = row.verified_at.timestamp() - offset
        done = {name for name, n in broken.items() if n.fixed is not None and last.get(name) == "available"}
        if len(done) == len(broken) or time.monotonic() > deadline:
            return {
                name: f"{last.get(name, '?')}, ledger: {[r.outcome for r in ledger.get(name, [])]}"
                for name in broken
                if name not in done
            }
        time.sleep(POLL)


def provision_calls(log: Path, offset: float) -> dict[str, list[float]]:
    """Node (UUID or name, as in the path) -> when Ironic's API log recorded a 202 to a provision-state PUT.

    The ledger's row keeps when the action started and when it was verified; when the call returned is in
    Ironic's log (its local time, this host's clock), converted to this process's monotonic clock.
    """
    calls: dict[str, list[float]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            if m := PROVISION_CALL.match(line):
                when = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").timestamp() - offset  # naive: local time
                calls.setdefault(m[2], []).append(when)
    return calls


def agent_sweeps(store: Store, offset: float) -> list[dict[str, Any]]:
    """The agent's sweeps from its store, in this process's monotonic clock."""
    with store.session() as session:
        rows = session.scalars(select(Sweep).where(Sweep.site == SITE).order_by(Sweep.id))
        return [
            {
                "start": r.started_at.timestamp() - offset,
                "end": r.finished_at.timestamp() - offset,
                "ok": r.ok,
                "summary": r.summary,
            }
            for r in rows
        ]


def ledger_phases(
    store: Store, broken: dict[str, Node], sweeps: list[dict[str, Any]], calls: dict[str, list[float]], offset: float
) -> None:
    """Split each fixed node's time with the agent's ledger and Ironic's API log (`offset`: wall -> monotonic)."""
    ledger = by_node(store)
    for node in broken.values():
        row = fixed_row(ledger.get(node.name, []))
        if row is None or row.started_at is None or node.fixed is None:
            continue
        started = row.started_at.timestamp() - offset
        sweep = next((s for s in sweeps if s["start"] <= started <= s["end"]), None)
        returned = min(
            (t for t in calls.get(row.node_uuid, []) + calls.get(node.name, []) if t >= started - 0.01), default=None
        )
        if sweep is None or returned is None:
            continue
        node.phases = {
            "wait_for_sweep": sweep["start"] - node.injected,  # < 0: a sweep already running when the call returned
            "sweep_to_action": started - sweep["start"],  # snapshot, detection, earlier actions in that sweep
            "api_call": returned - started,  # lock, re-check, intent, attempt record, the call
            "ironic_and_verify": node.fixed - returned,  # Ironic's work, the batch's calls, waiting to settle, verify
        }


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


def sweep_notes(sweeps: list[dict[str, Any]]) -> list[str]:
    return [
        f"a sweep had an incomplete snapshot or an error: {s['summary'].get('skipped')} {s['summary'].get('error')}"
        for s in sweeps
        if not s["ok"] or s["summary"].get("skipped")
    ]


def time_to_fixed(args: argparse.Namespace, workdir: Path, state: State, console: Console, out: dict[str, Any]) -> None:
    """The agent with no grace; `--faults` faults after its idle sweep; each node until its fix is verified."""
    directory = workdir / "fixed"
    directory.mkdir()
    settings = config.load(write_config(directory, args.interval))
    offset = time.time() - time.monotonic()
    agent = start_agent(directory)
    broken: dict[str, Node] = {}
    try:
        out["idle_sweep"] = wait_first_sweep(agent, directory / "agent.out")
        console.log(f"agent PID {agent.pid}: idle sweep done, injecting {args.faults} faults")
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
        store = open_store(settings.effective_store_url, settings.state_dir)
        try:
            unfixed = poll_fixed(state, store, broken, offset, FIX_TIMEOUT) if broken else {}
        finally:
            store.close()
        if unfixed:
            out["problems"].append(f"not verified fixed and available after {FIX_TIMEOUT:.0f} s: {unfixed}")
    finally:
        out["agent_exit"] = stop_agent(agent)
    if out["agent_exit"] != 0:
        out["problems"].append(f"agent exited with {out['agent_exit']}")
    store = open_store(settings.effective_store_url, settings.state_dir)
    try:
        sweeps = agent_sweeps(store, offset)
        calls = provision_calls(lifecycle.testbed_dir(workdir) / "ironic.log", offset)
        ledger_phases(store, broken, sweeps, calls, offset)
        outcomes = Counter((a.hammer, a.outcome) for a in store.actions(site=SITE, limit=10_000))
    finally:
        store.close()
    out["agent_sweeps"] = len(summaries(directory / "agent.out"))
    out["agent_stderr"] = (directory / "agent.err").read_text()[-2000:]
    out["notes"] += sweep_notes(sweeps)
    out["ledger_sweeps"] = [
        {"start": round(s["start"] - inject_started, 2), "seconds": round(s["end"] - s["start"], 2), "ok": s["ok"]}
        | s["summary"]
        for s in sweeps
    ]
    out["ledger_outcomes"] = {f"{h} {o}": n for (h, o), n in sorted(outcomes.items())}
    out["nodes"] = [
        {
            **asdict(n),
            "injected_from": round(n.injected_from - inject_started, 2),
            "injected": round(n.injected - inject_started, 2),
            "fixed": None if n.fixed is None else round(n.fixed - inject_started, 2),
            "available": None if n.available is None else round(n.available - inject_started, 2),
            "seconds": None if n.seconds is None else round(n.seconds, 2),
            "upper_bound_seconds": None if n.fixed is None else round(n.fixed - n.injected_from, 2),
            "seen_available_seconds": None if n.available is None else round(n.available - n.injected, 2),
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
    available = [n.available - n.injected for n in broken.values() if n.available is not None]
    if available:
        out["time_to_seen_available"] = {
            "p50": round(nearest_rank(available, 50), 2),
            "p95": round(nearest_rank(available, 95), 2),
            "max": round(max(available), 2),
        }
    phases = [n.phases for n in broken.values() if n.phases]
    out["phase_medians"] = {k: round(statistics.median(p[k] for p in phases), 2) for k in phases[0]} if phases else {}


def wait_escalated(store: Store, names: list[str], timeout: float) -> None:
    """Until every node has an `escalated` row (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ledger = by_node(store)
        if all(any(r.kind == "escalate" and r.outcome == "escalated" for r in ledger.get(n, [])) for n in names):
            return
        time.sleep(1.0)


def escalation(args: argparse.Namespace, workdir: Path, state: State, console: Console) -> dict[str, Any]:
    """A second agent with a grace period; `--ineffective` nodes whose fix never works; how many sweeps after the
    grace period (the one after the ineffective verdict, on Ironic's clock) the escalation came."""
    directory = workdir / "escalation"
    directory.mkdir()
    settings = config.load(write_config(directory, args.interval, GRACE_MINUTES))
    out: dict[str, Any] = {
        "fault": INEFFECTIVE,
        "grace_minutes": GRACE_MINUTES,
        "within_sweeps": ESCALATE_WITHIN,
        "problems": [],
        "notes": [],
    }
    agent = start_agent(directory)
    names: list[str] = []
    try:
        wait_first_sweep(agent, directory / "agent.out")
        injected = time.time()
        try:
            names = list(lifecycle.inject(workdir, INEFFECTIVE, count=args.ineffective))
        except Exception as exc:  # reported; the time-to-fixed figures stand
            out["problems"].append(f"{INEFFECTIVE} injection failed: {exc}")
            console.print(f"[red]{INEFFECTIVE} injection failed: {exc}[/red]")
        if names:
            console.log(f"agent PID {agent.pid}, grace {GRACE_MINUTES:g} min: {INEFFECTIVE} on {', '.join(names)}")
            store = open_store(settings.effective_store_url, settings.state_dir)
            try:
                wait_escalated(store, names, ESCALATE_TIMEOUT)
            finally:
                store.close()
    finally:
        out["agent_exit"] = stop_agent(agent)
    if out["agent_exit"] != 0:
        out["problems"].append(f"escalation agent exited with {out['agent_exit']}")
    out["seconds"] = round(time.time() - injected, 1)
    store = open_store(settings.effective_store_url, settings.state_dir)
    try:
        sweeps = agent_sweeps(store, 0.0)  # wall-clock seconds: grace is judged on Ironic's clock, this host's
        ledger = by_node(store)
    finally:
        store.close()
    conn = fleet.connect(state)
    out["notes"] += sweep_notes(sweeps)
    out["sweeps"] = [
        {"start": round(s["start"] - injected, 2), "seconds": round(s["end"] - s["start"], 2)} | s["summary"]
        for s in sweeps
    ]
    out["nodes"] = [escalated(name, ledger.get(name, []), sweeps, injected, conn, out) for name in names]
    counts = [n["sweeps_after_grace"] for n in out["nodes"] if n.get("sweeps_after_grace") is not None]
    out["sweeps_after_grace"] = max(counts) if counts and len(counts) == len(names) else None
    return out


def escalated(
    name: str, rows: list[ActionRow], sweeps: list[dict[str, Any]], injected: float, conn: Any, out: dict[str, Any]
) -> dict[str, Any]:
    """One node's way to escalation: its ledger rows, the ineffective verdict, the grace period after it, the sweep
    that escalated, and the node's maintenance as Ironic shows it now."""

    def rel(when: datetime | None) -> float | None:
        return None if when is None else round(when.timestamp() - injected, 2)

    live = conn.baremetal.get_node(name)
    node: dict[str, Any] = {
        "name": name,
        "ledger": [
            {"hammer": r.hammer, "kind": r.kind, "outcome": r.outcome, "started": rel(r.started_at)}
            | ({"verified": rel(r.verified_at)} if r.verified_at else {})
            | {"reason": (r.reason or "")[:160]}
            for r in rows
        ],
        "provision_state": live.provision_state,
        "maintenance": live.is_maintenance,
        "maintenance_reason": live.maintenance_reason,
    }
    esc = next((r for r in rows if r.kind == "escalate" and r.outcome == "escalated"), None)
    if esc is None or esc.started_at is None:
        out["problems"].append(f"{name} was not escalated within {ESCALATE_TIMEOUT:.0f} s: {node['ledger']}")
        return node
    ineffective = [r for r in rows if r.outcome == "ineffective" and r.hammer == esc.hammer and r.id < esc.id]
    if not ineffective:
        out["problems"].append(f"{name} was escalated without an ineffective {esc.hammer} action: {node['ledger']}")
        return node
    last = ineffective[-1]
    if (last.hammer, last.kind) != ("error-resetter", "undeploy"):
        out["notes"].append(
            f"{name}: expected error-resetter's undeploy to be ineffective; it was {last.hammer}'s {last.kind} "
            f"(ledger: {', '.join(f'{r.hammer} {r.kind} {r.outcome}' for r in rows)})"
        )
    # the grace period the escalation waited out: from the node's last change, as the escalation's re-check saw it
    changed = datetime.fromisoformat((esc.before or last.after or {})["updated_at"]).timestamp()
    grace_end = changed + GRACE_MINUTES * 60
    start = esc.started_at.timestamp()
    count = sum(1 for s in sweeps if s["end"] >= grace_end and s["start"] <= start)
    expected = f"hammersmith: {esc.hammer} gave up: its last {last.kind} was ineffective"
    node |= {
        "hammer": esc.hammer,
        "kind": last.kind,
        "ineffective_verified": rel(last.verified_at),
        # later than the verdict's own change when Ironic touched the node since (its power sync clears last_error)
        "grace_from": round(changed - injected, 2),
        "changed_after_verdict": {
            k: [str(v)[:80] for v in (before, after)]
            for k, after in (esc.before or {}).items()
            if (before := (last.after or {}).get(k)) != after
        },
        "grace_ended": round(grace_end - injected, 2),
        "escalated": rel(esc.started_at),
        "sweeps_after_grace": count,
    }
    if count < 1:
        out["problems"].append(f"{name} was escalated before its grace period ended")
    elif count > ESCALATE_WITHIN:
        out["problems"].append(f"{name} escalated {count} sweeps after the grace period (target {ESCALATE_WITHIN})")
    if not (live.is_maintenance and (live.maintenance_reason or "").startswith(expected)):
        out["problems"].append(f"{name} is not in maintenance with {expected!r}: {live.maintenance_reason!r}")
    return node


def measure(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """One fresh testbed: sweep cost on the healthy fleet, faults under an agent, then ineffective fixes under
    another; always torn down."""
    out: dict[str, Any] = {"problems": [], "notes": []}
    with tempfile.TemporaryDirectory(prefix="hammersmith-remediation-") as tmp:
        workdir = Path(tmp)
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
            time_to_fixed(args, workdir, state, console, out)
            if args.ineffective:
                esc = out["escalation"] = escalation(args, workdir, state, console)
                out["problems"] += esc.pop("problems")
                out["notes"] += esc.pop("notes")
            out["ironic_5xx"] = server_errors(lifecycle.testbed_dir(workdir) / "ironic.log")
            if out["ironic_5xx"]:
                out["notes"].append(f"Ironic answered {len(out['ironic_5xx'])} request(s) with 5xx")
        finally:
            lifecycle.down(workdir)
    return out


def report(out: dict[str, Any], args: argparse.Namespace, console: Console) -> None:
    """Per node, slowest last, then the figures the issue's targets are about."""
    table = Table(title=f"time to fixed: {args.faults} faults in {args.nodes} nodes, sweep every {args.interval} s")
    for column in ("node", "fault", "fixed after s", "wait", "to action", "call", "Ironic+verify", "seen available"):
        table.add_column(column, justify="right")
    keys = ("wait_for_sweep", "sweep_to_action", "api_call", "ironic_and_verify")
    for n in sorted(out.get("nodes", []), key=lambda n: n["seconds"] if n["seconds"] is not None else math.inf):
        p = n["phases"]
        table.add_row(
            n["name"],
            n["fault"],
            "-" if n["seconds"] is None else f"{n['seconds']:.1f}",
            *(f"{p[k]:.1f}" if k in p else "-" for k in keys),
            "-" if n["seen_available_seconds"] is None else f"{n['seen_available_seconds']:.1f}",
        )
    console.print(table)
    console.print(
        "fixed: the ledger row's verified_at (outcome fixed); wait: until the sweep that acted began; to action: "
        "that sweep's snapshot, detection and earlier actions; call: lock, re-check, intent, until Ironic logged the "
        "provision call; Ironic+verify: the rest, until the agent verified the fix; seen available: the bench's poll"
    )
    if esc := out.get("escalation"):
        for n in esc["nodes"]:
            if n.get("sweeps_after_grace") is not None:
                console.print(
                    f"{n['name']}: {n['hammer']} {n['kind']} ineffective at {n['ineffective_verified']} s, grace ended "
                    f"{n['grace_ended']} s, escalated {n['sweeps_after_grace']} sweeps after the grace period "
                    f"(at {n['escalated']} s)"
                )
    summary = Table(title="summary")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    if ttf := out.get("time_to_fixed"):
        summary.add_row(
            "time to fixed (verified) p50 / p95 / max", f"{ttf['p50']:.1f} / {ttf['p95']:.1f} / {ttf['max']:.1f} s"
        )
    if seen := out.get("time_to_seen_available"):
        summary.add_row(
            "seen available p50 / p95 / max", f"{seen['p50']:.1f} / {seen['p95']:.1f} / {seen['max']:.1f} s"
        )
    summary.add_row("phase medians", ", ".join(f"{k} {v:.1f}" for k, v in out.get("phase_medians", {}).items()))
    summary.add_row("agent sweeps (JSON lines)", str(out.get("agent_sweeps", "-")))
    summary.add_row("injection took", f"{out.get('inject_seconds', '-')} s")
    if esc:
        n = esc.get("sweeps_after_grace")
        summary.add_row(
            f"escalation ({esc['fault']}, grace {esc['grace_minutes']:g} min)",
            "not escalated" if n is None else f"escalated {n} sweeps after the grace period",
        )
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
        "--faults", type=int, default=10, help="spread 4:3:3 over error-teardown, deploy-failed, clean-failed-automated"
    )
    parser.add_argument("--interval", type=int, default=10, help="the agents' sweep_interval_seconds (>= 5)")
    parser.add_argument(
        "--ineffective", type=int, default=2, help=f"nodes given {INEFFECTIVE}, to time escalation (0: skip)"
    )
    args = parser.parse_args(argv)
    console = Console()
    started = datetime.now(UTC)
    out = measure(args, console)
    report(out, args, console)
    return finish(console, RESULTS, {"started_at": started.isoformat(), "args": vars(args)}, out)


if __name__ == "__main__":
    sys.exit(main())
