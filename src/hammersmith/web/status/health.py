"""A site's public health, from its newest probe and smoke results, its operators' posts and its schedule.

Pure functions (data in, a state out), so the page, the JSON, the feed and the history bar judge alike and the rules
can be tested on their own. The rules, in order (docs/status-page.md says the same):

1. offline as scheduled: a schedule covering the whole site has it offline now; nothing else is judged.
2. unknown: no heartbeat (no probe and no cheap smoke result) younger than its freshness limit, and no ongoing
   post saying more: the page does not know, and says so instead of showing stale green.
3. down: the newest result of a check that logs in or lists (ESSENTIAL) failed.
4. degraded: the newest result of any other check failed.
5. up otherwise.

An ongoing post can only make it worse: impact down -> down, degraded or maintenance -> at least degraded, info
changes nothing. A result older than its freshness limit (3 x its schedule's interval) is not judged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

#: up < degraded < down; offline and unknown are not ranked against them (rules 1 and 2 decide those)
SEVERITY: dict[str, int] = {"up": 0, "degraded": 1, "down": 2}
#: what each state is called on the page
LABELS: dict[str, str] = {
    "up": "Operational",
    "degraded": "Degraded",
    "down": "Down",
    "offline": "Offline as scheduled",
    "unknown": "Unknown",
    "none": "No data",
}
#: the checks a user cannot work without: logging in and listing (source, name)
ESSENTIAL = frozenset({("probe", "token"), ("probe", "reads"), ("smoke", "token-issue"), ("smoke", "list-nodes")})
#: what an ongoing post's impact does to the state at least
IMPACT_FLOOR: dict[str, str] = {"down": "down", "degraded": "degraded", "maintenance": "degraded", "info": "up"}
#: a result counts for this many of its schedule's intervals, so one late run is not "unknown"
FRESH_INTERVALS = 3


@dataclass(frozen=True)
class Check:
    """The newest outcome of one probe or smoke scenario, with how long it stays true and whether it is a heartbeat
    (run often: probes and the cheap smoke set)."""

    source: str
    name: str
    status: str
    at: datetime
    max_age: timedelta
    heartbeat: bool

    def fresh(self, now: datetime) -> bool:
        return now - self.at <= self.max_age

    @property
    def essential(self) -> bool:
        return (self.source, self.name) in ESSENTIAL


def worst(*states: str) -> str:
    """The worst of up, degraded and down."""
    return max(states, key=SEVERITY.__getitem__, default="up")


def from_failures(failed: Iterable[tuple[str, str]]) -> str:
    """down if an essential check failed, degraded if another one did, else up."""
    failed = set(failed)
    if failed & ESSENTIAL:
        return "down"
    return "degraded" if failed else "up"


def with_posts(state: str, impacts: Iterable[str]) -> str:
    """A post's impact makes the state worse, never better."""
    return worst(state, *(IMPACT_FLOOR[i] for i in impacts))


def judge(checks: Iterable[Check], impacts: Iterable[str], offline: bool, now: datetime) -> str:
    """The site's state now (the module docstring has the rules)."""
    if offline:
        return "offline"
    fresh = [c for c in checks if c.fresh(now)]
    impacts = list(impacts)
    computed = from_failures((c.source, c.name) for c in fresh if c.status == "failed")
    if not any(c.heartbeat for c in fresh):
        posted = with_posts("up", impacts)
        return "unknown" if posted == "up" else posted
    return with_posts(computed, impacts)


def day_state(failed: Iterable[tuple[str, str]], passed: bool, impacts: Iterable[str], offline: bool) -> str:
    """One day of the history bar: the worst moment of the day. Failures during a scheduled offline window are
    left out by the caller; a day with no result is "offline" if a window touched it, else "none" (no data),
    unless a post of that day says worse."""
    failed, impacts = set(failed), list(impacts)
    if failed or passed:
        return with_posts(from_failures(failed), impacts)
    posted = with_posts("up", impacts)
    if posted != "up":
        return posted
    return "offline" if offline else "none"
