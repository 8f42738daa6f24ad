"""The suite's agent fixture itself: it starts, serves and stops."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.hostile.conftest import AgentProcess


def test_agent_process_serves_and_stops(agent_process: Callable[..., AgentProcess]) -> None:
    agent = agent_process()
    assert httpx.get(f"{agent.url}/healthz", timeout=5).status_code == 200
    assert agent.stop() == 0
