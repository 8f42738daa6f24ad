"""The smoke scenario registry: one module per scenario, in a cheap set (often) or an expensive one (rarely).

A scenario does what a user does (log in, list, create, deploy) and undoes it. Everything it
creates is named `hammersmith-smoke-<run id>` and is removed in a `finally`, after a failure or
a timeout too; a scenario that leaves something behind has failed, whatever else it did. Sites
add their own through the `hammersmith.smoke` entry point group.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from hammersmith.cloud.connection import SiteConnection
from hammersmith.config import Site
from hammersmith.detect.probes import reason
from hammersmith.plugins import load_plugins

BUILTIN = ("token_issue", "list_nodes", "network_port", "deploy_node", "reserve_and_boot")
SETS = ("cheap", "expensive")
SmokeSet = Literal["cheap", "expensive"]
Status = Literal["passed", "failed", "skipped"]
PREFIX = "hammersmith-smoke-"

log = logging.getLogger("hammersmith.smoke")


class Skip(Exception):
    """The scenario does not apply to this site (e.g. no network service): skipped, with this reason."""


class LeftBehind(Exception):
    """The scenario's cleanup could not remove what it created: a failure of its own."""


@dataclass(frozen=True)
class Step:
    """One timed part of a scenario (e.g. how long a lease took to start), for the reports."""

    name: str
    status: Status
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 3)}


@dataclass
class SmokeContext:
    """What a scenario may use: the site, a connection of its own, its run id, and a cooperative deadline."""

    name: str
    site: Site
    connection: SiteConnection
    run_id: str
    deadline: float
    #: what the result message should say even when the scenario passes (e.g. a fallback it took)
    notes: list[str] = field(default_factory=list)
    #: the steps timed so far, in order; the one under way when the scenario failed is `failed`
    steps: list[Step] = field(default_factory=list)

    @property
    def tag(self) -> str:
        """The name every resource this run creates carries."""
        return f"{PREFIX}{self.run_id}"

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check_deadline(self, doing: str) -> None:
        if self.remaining() <= 0:
            raise TimeoutError(f"scenario timed out ({self.site.smoke.timeout_seconds:.0f} s) while {doing}")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time what the block does as the step `name` (passed, or failed if it raises)."""
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.steps.append(Step(name, "failed", time.perf_counter() - started))
            raise
        self.steps.append(Step(name, "passed", time.perf_counter() - started))

    def wait(self, doing: str, done: Callable[[], bool], interval: float = 0.5, limit: float | None = None) -> None:
        """Poll `done` until true; TimeoutError at the scenario's deadline (or after `limit` s, for cleanups)."""
        until = time.monotonic() + limit if limit is not None else self.deadline
        while not done():
            if time.monotonic() >= until:
                raise TimeoutError(f"timed out while {doing}")
            time.sleep(interval)


ScenarioFunc = Callable[[SmokeContext], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    set: SmokeSet
    func: ScenarioFunc
    doc: str


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    status: Status
    seconds: float
    message: str | None = None
    started_at: float = 0.0
    steps: tuple[Step, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "message": self.message,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class SmokeRun:
    """One run of a set against a site."""

    site: str
    set: SmokeSet
    run_id: str
    started_at: datetime
    finished_at: datetime
    results: tuple[ScenarioResult, ...] = ()
    reports: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(r.status == "failed" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "set": self.set,
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "failed": self.failed,
            "results": [r.to_dict() for r in self.results],
            "reports": self.reports,
        }


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, set: SmokeSet = "cheap") -> Callable[[ScenarioFunc], ScenarioFunc]:  # noqa: A002
    """Register a scenario under `name` in the cheap or expensive set."""
    if set not in SETS:
        raise ValueError(f"scenario {name!r}: set must be one of {SETS}")

    def register(func: ScenarioFunc) -> ScenarioFunc:
        if name in SCENARIOS and SCENARIOS[name].func is not func:
            raise ValueError(f"scenario {name!r} registered twice")
        SCENARIOS[name] = Scenario(name, set, func, (func.__doc__ or "").strip().splitlines()[0])
        return func

    return register


def load() -> dict[str, Scenario]:
    """Every scenario, built-ins first in BUILTIN's order (the order they run and are reported in)."""
    load_plugins(__name__, BUILTIN, "hammersmith.smoke")
    return {s.name: s for s in sorted(SCENARIOS.values(), key=_builtin_order)}


def _builtin_order(sc: Scenario) -> int:
    module = sc.func.__module__.rsplit(".", 1)[-1]
    return BUILTIN.index(module) if module in BUILTIN else len(BUILTIN)


def new_run_id() -> str:
    """Short, sortable and unique enough to find this run's leftovers by name."""
    return f"{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def run_scenario(sc: Scenario, ctx: SmokeContext) -> ScenarioResult:
    started, wall = time.perf_counter(), time.time()
    try:
        sc.func(ctx)
    except Skip as exc:
        return ScenarioResult(sc.name, "skipped", time.perf_counter() - started, str(exc), wall)
    except Exception as exc:
        message = str(exc) if isinstance(exc, LeftBehind) else reason(exc)
        log.error("site %s: smoke scenario %s failed: %s", ctx.name, sc.name, message)
        return ScenarioResult(sc.name, "failed", time.perf_counter() - started, message, wall, tuple(ctx.steps))
    seconds, notes = time.perf_counter() - started, "; ".join(ctx.notes) or None
    return ScenarioResult(sc.name, "passed", seconds, notes, wall, tuple(ctx.steps))


def run(name: str, site: Site, smoke_set: SmokeSet, only: list[str] | None = None) -> SmokeRun:
    """Run a set's scenarios one after the other, each with its own deadline (`smoke.timeout_seconds`)."""
    wanted = [s for s in load().values() if s.set == smoke_set and (only is None or s.name in only)]
    run_id = new_run_id()
    started_at = datetime.now(UTC)
    connection = SiteConnection(name, site)
    results = []
    try:
        for sc in wanted:
            ctx = SmokeContext(name, site, connection, run_id, time.monotonic() + site.smoke.timeout_seconds)
            results.append(run_scenario(sc, ctx))
    finally:
        connection.close()
    return SmokeRun(name, smoke_set, run_id, started_at, datetime.now(UTC), tuple(results))


def run_and_report(
    name: str, site: Site, smoke_set: SmokeSet, reports_dir: Path, only: list[str] | None = None
) -> SmokeRun:
    """`run`, then its CTRF JSON and JUnit XML files in `reports_dir` (named in the returned run's `reports`)."""
    from hammersmith.detect.smoke import reports

    return reports.write(run(name, site, smoke_set, only), reports_dir)
