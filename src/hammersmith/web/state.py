"""What the agent's web pages read: its settings, its store, and the last snapshot of each site it sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Settings
from hammersmith.store import Store


@dataclass
class WebState:
    """Shared by the sweep loop (which sets `latest`) and the pages (which only read it): a dict item assignment
    is atomic, so a page sees the previous snapshot or the new one, never half of one."""

    settings: Settings
    store: Store
    latest: dict[str, Snapshot] = field(default_factory=dict)
    #: what a page may keep for a while, by key: (when it was computed, monotonic seconds; the value)
    memo: dict[str, tuple[float, Any]] = field(default_factory=dict)
