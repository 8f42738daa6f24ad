"""The hostile-input suite's real agent: `hammersmith run` as a child process, against the session's Ironic.

Observe-only (every hammer in its default mode) and no scheduled smoke deploy, so an agent here never
changes the shared testbed; a test that needs a hammer to act passes `modes`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from hammersmith.testbed.ironic import CLOUD_NAME
from tests.conftest import Testbed

TOKEN = "hostile-webhook-token-0123456789"


@dataclass
class AgentProcess:
    """A running `hammersmith run`; its stderr is collected line by line so the pipe never fills."""

    proc: subprocess.Popen[str]
    config: Path
    workdir: Path
    lines: list[str] = field(default_factory=list)
    url: str = ""

    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first stderr line holding `text`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"agent never logged {text!r}; its log:\n{self.log()[-4000:]}")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not stopped in 30 s; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def agent_config(
    workdir: Path,
    testbed: Testbed,
    *,
    http: dict[str, Any] | None = None,
    modes: dict[str, str] | None = None,
    site: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
) -> Path:
    """hammersmith.yaml for an agent on the session testbed: any free port, the suite's webhook token."""
    site_cfg: dict[str, Any] = {
        "cloud": CLOUD_NAME,
        "policy": {"grace_minutes": 0, "hammers": {"stale-inspection": "off", **(modes or {})}},
        "smoke": {"cheap_interval_seconds": 0, "expensive_interval_seconds": 0},
        **(site or {}),
    }
    settings = {
        "state_dir": str(workdir),
        "http": {"listen": "127.0.0.1:0", "webhook_token": TOKEN, **(http or {})},
        "sites": {"lab": site_cfg},
        **(top or {}),
    }
    path = workdir / "hammersmith.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def start_agent(config: Path, testbed: Testbed, env: dict[str, str] | None = None, timeout: float = 60) -> AgentProcess:
    """Start `hammersmith run` and wait until it says where it serves (its base URL, without /metrics)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hammersmith", "--config", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(testbed.workdir / "clouds.yaml"), **(env or {})},
    )
    agent = AgentProcess(proc, config, config.parent)

    def collect() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            agent.lines.append(line)

    threading.Thread(target=collect, daemon=True).start()
    try:
        line = agent.wait_for("serving metrics on ", timeout)
    except AssertionError:
        agent.stop()
        raise
    agent.url = line.split("serving metrics on ")[1].strip().removesuffix("/metrics")
    return agent


@pytest.fixture
def agent_process(tmp_path: Path, testbed: Testbed) -> Iterator[Callable[..., AgentProcess]]:
    """Start real agents with `agent_config` keywords; every one is stopped by PID at the end of the test."""
    started: list[AgentProcess] = []

    def start(env: dict[str, str] | None = None, **config: Any) -> AgentProcess:
        workdir = tmp_path / f"agent{len(started)}"
        workdir.mkdir()
        agent = start_agent(agent_config(workdir, testbed, **config), testbed, env)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
