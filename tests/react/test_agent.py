"""The safety layer's fleet-level guards and the agent's crash safety, against the real Ironic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import func, select

from hammersmith.react.sweep import Sweeper
from hammersmith.store import open_store
from hammersmith.store.models import Sweep
from hammersmith.testbed import lifecycle
from hammersmith.testbed.ironic import Ironic
from tests.conftest import Testbed, hammersmith
from tests.react.conftest import applied, break_nodes, hands_off_nodes, untouched, wait_states, write_config


def agent(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hammersmith", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def scrape_agent(proc: subprocess.Popen[str], until: str, timeout: float = 30) -> tuple[str, str]:
    """The agent's base URL, from the address it logs on start (its config listens on port 0), and its /metrics."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "serving metrics on " in line:
            url = line.split("serving metrics on ")[1].strip()
            text = ""
            while time.monotonic() < deadline and until not in text:
                text = httpx.get(url, timeout=5).text
                time.sleep(0.5)
            return url.removesuffix("/metrics"), text
    raise AssertionError("the agent never said where it serves metrics")


def test_breaker_trips_at_40_percent_and_applies_nothing(
    bed: Testbed, make_sweeper: Callable[..., Sweeper], tmp_path: Path
) -> None:
    broken = break_nodes(bed, "error-teardown", count=6) + break_nodes(bed, "deploy-failed", count=3)
    manual = break_nodes(bed, "clean-failed", count=3)  # 12 of 30 nodes: 40 % of the fleet
    broken += manual
    before = hands_off_nodes(bed)
    sweeper = make_sweeper({"error-resetter": "apply", "clean-failed": "apply"})
    result = sweeper.sweep(apply=True)
    assert result.breaker and "exceed" in result.breaker
    assert {a["outcome"] for a in result.actions if a["node"] in broken} == {"refused"}
    assert Counter(bed.node_raw(n)["provision_state"] for n in broken) == {
        "error": 6,
        "deploy failed": 3,
        "clean failed": 3,
    }
    status = json.loads(
        hammersmith("--config", str(tmp_path / "hammersmith.yaml"), "breaker", "status", "--json", cwd=tmp_path).stdout
    )
    assert status["open"] and status["reason"] == result.breaker
    # stays open: a second sweep, even a smaller batch, applies nothing until a human resets it
    assert {a["outcome"] for a in sweeper.sweep(apply=True).actions if a["node"] in broken} == {"refused"}
    reset = hammersmith("--config", str(tmp_path / "hammersmith.yaml"), "breaker", "reset", "--json", cwd=tmp_path)
    assert json.loads(reset.stdout)["reset"] is True
    wide = make_sweeper(
        {"error-resetter": "apply", "clean-failed": "apply"},
        breaker={"max_percent": 100, "max_actions": 100},
        rate={"per_sweep": 20, "per_hour": 50},
    )
    fixed = wide.sweep(apply=True)
    assert Counter(a["outcome"] for a in fixed.actions if a["node"] in broken) == {"fixed": 12}
    wait_states(bed, [n for n in broken if n not in manual], {"available"}, timeout=120)
    wait_states(bed, manual, {"manageable"})  # a failed manual clean goes back where the operator had it
    untouched(before, bed)


def test_kill_9_mid_action_is_followed_up_not_repeated(bed: Testbed, tmp_path: Path) -> None:
    """An agent killed while Ironic inspects its node (the conductor crashes too, so the inspection fails): the
    next agent takes over the dead agent's lock, returns the node to `available` and records the inspection as
    ineffective. The inspection is never started again (item 14: stale-inspection never strands a node)."""
    ironic = Ironic(lifecycle.testbed_dir(bed.workdir))
    state = ironic.load_state()
    assert state is not None
    ironic.restart(state, inspect_delay=20)  # slow hardware: an inspection takes 20 s
    config = write_config(tmp_path, {"stale-inspection": "apply", "error-resetter": "off"}, inspect_per_sweep=1)
    store = open_store(f"sqlite:///{tmp_path / 'hammersmith.sqlite'}")
    try:
        first = agent(config, "sweep", "--once", "--apply", "--json")
        deadline = time.monotonic() + 60
        while not store.pending("lab") and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()
        (acting,) = store.pending("lab")  # the call returned; the agent waits, holding the lock, for the node
        assert acting.node_name is not None and acting.params == {"return_to": "available"}
        wait_states(bed, [acting.node_name], {"inspecting", "inspect wait"}, timeout=15)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        ironic.restart(state, hard=True)  # the conductor crashes too; Ironic fails the interrupted inspection
        assert bed.node_raw(acting.node_name)["provision_state"] == "inspect failed"
        outcome = "succeeded"
        for _ in range(3):  # each sweep follows up as far as the node lets it
            second = hammersmith("--config", str(config), "sweep", "--once", "--apply", "--json", cwd=tmp_path)
            assert second.returncode == 0, second.stderr
            (row,) = [r for r in store.actions(node=acting.node_uuid) if r.id == acting.id]
            outcome = row.outcome
            if outcome != "succeeded":
                break
        assert outcome == "ineffective" and row.verified_at is not None  # the inspection failed: not fixed
        assert bed.node_raw(acting.node_name)["provision_state"] == "available"  # back where it was taken from
        inspections = [r for r in store.actions(node=acting.node_uuid) if r.kind == "inspect" and r.mode == "apply"]
        assert [r.id for r in inspections] == [acting.id]  # one call, never repeated
    finally:
        store.close()
        if not ironic.load_state().pid:  # type: ignore[union-attr]
            ironic.start(state)


def test_two_agents_never_act_on_one_node_twice(bed: Testbed, tmp_path: Path) -> None:
    broken = break_nodes(bed, "error-teardown", count=3)
    config = write_config(tmp_path, {"error-resetter": "apply"})
    agents = [agent(config, "sweep", "--once", "--apply", "--json") for _ in range(2)]
    for proc in agents:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = open_store(f"sqlite:///{tmp_path / 'hammersmith.sqlite'}")
    try:
        for name in broken:
            assert len(applied(store, name)) == 1, f"{name} acted on: {applied(store, name)}"
        with store.session() as session:  # both agents swept, into this one store (who wins a node is timing)
            assert session.scalar(select(func.count()).select_from(Sweep).where(Sweep.site == "lab")) == 2
    finally:
        store.close()
    wait_states(bed, broken, {"available"})


def test_run_agent_sweeps_until_sigterm(bed: Testbed, tmp_path: Path) -> None:
    (name,) = break_nodes(bed, "deploy-failed")
    config = write_config(tmp_path, {"error-resetter": "apply"})
    text = config.read_text().replace("notify: []", "notify: []\n    sweep_interval_seconds: 5")
    config.write_text(text)
    proc = agent(config, "run", "--json")
    try:
        wait_states(bed, [name], {"available"}, timeout=60)
        base, metrics = scrape_agent(proc, until='outcome="fixed"')
        # the same process serves the public status page and the dashboard, which shows the node from its sweeps
        assert httpx.get(f"{base}/status", timeout=10).status_code == 200
        assert httpx.get(f"{base}/", timeout=10).headers["location"].startswith("/login")
        store = open_store(f"sqlite:///{tmp_path / 'hammersmith.sqlite'}")
        try:
            store.add_user("olga", "a long password", "viewer")
        finally:
            store.close()
        with httpx.Client(base_url=base, timeout=10) as browser:
            form = browser.get("/login").text
            token = form.split('name="csrf_token" value="')[1].split('"')[0]
            browser.post("/login", data={"name": "olga", "password": "a long password", "csrf_token": token})
            assert browser.get("/").status_code == 200 and name in browser.get(f"/nodes/lab/{name}").text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped" in out
    # the agent serves its own metrics: what it did, from the ledger, and the snapshot it did it on
    fixed = 'hammersmith_hammer_actions_total{hammer="error-resetter",outcome="fixed",site="lab"}'
    assert any(line.startswith(fixed) and float(line.split()[-1]) >= 1 for line in metrics.splitlines()), metrics
    assert 'hammersmith_snapshot_complete{site="lab"} 1.0' in metrics
    store = open_store(f"sqlite:///{tmp_path / 'hammersmith.sqlite'}")
    try:
        last = store.last_sweep("lab")
        assert last is not None and last.ok
    finally:
        store.close()
