"""`hammersmith probe` and `hammersmith smoke run`, and the agent's schedules for both.

Every outcome is also recorded in the store (`detect_results`): the dashboard plots that history and the public
status page judges each site by it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, SiteOpt, console, emit_json, err_console
from hammersmith.cli.quantify import opened
from hammersmith.cli.render import markup, plain
from hammersmith.config import Settings, Site
from hammersmith.detect import probes, smoke
from hammersmith.detect.probes import ProbeResult
from hammersmith.detect.probes.tls import iso
from hammersmith.errors import HammersmithError
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.store import Store, open_store

log = logging.getLogger("hammersmith.agent")
STATUS_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow"}

SetOpt = Annotated[str, typer.Option("--set", help="cheap (API happy paths) or expensive (deploys a node).")]


def probe(site: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """Black-box probes of a site: token, catalog, one read per service, TLS expiry; exit 1 if one failed."""
    settings = config_mod.load(OPTIONS.config)
    name, site_cfg = settings.site(site)
    started_at = datetime.now(UTC)
    results = probes.run(name, site_cfg)
    _record_once(settings, lambda store: record_probes(store, name, started_at, results))
    if as_json:
        emit_json({"site": name, "results": [r.to_dict() for r in results]})
    else:
        table = Table(title=markup("Probes of site '{}'", name, style="table.title"))
        for column in ("probe", "status", "step", "seconds", "error / reason"):
            table.add_column(column, overflow="fold")
        for r in results:
            status = plain(r.status, STATUS_STYLE[r.status])
            if not r.steps:
                table.add_row(plain(r.probe), status, "-", "-", plain(r.reason or ""))
            for i, step in enumerate(r.steps):
                table.add_row(
                    plain(r.probe) if i == 0 else "",
                    status if i == 0 else "",
                    plain(step.name),
                    f"{step.seconds:.3f}",
                    plain(step.error or "", "red"),
                )
            for (service, endpoint), not_after in sorted(r.tls_expiry.items()):
                table.add_row(
                    "", "", markup("{} certificate", service), "-", markup("expires {} ({})", iso(not_after), endpoint)
                )
        console.print(table)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


smoke_app = typer.Typer(no_args_is_help=True, help="Smoke scenarios: what a user does, done and undone.")


@smoke_app.command("run")
def smoke_run(
    smoke_set: SetOpt = "cheap",
    site: SiteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a set of smoke scenarios; CTRF JSON and JUnit XML go to smoke.reports_dir; exit 1 if one failed."""
    if smoke_set not in smoke.SETS:
        raise typer.BadParameter(f"{smoke_set!r}: use {' or '.join(smoke.SETS)}", param_hint="--set")
    settings = config_mod.load(OPTIONS.config)
    name, site_cfg = settings.site(site)
    run = smoke.run_and_report(name, site_cfg, smoke_set, reports_dir(settings, site_cfg))  # type: ignore[arg-type]
    _record_once(settings, lambda store: record_smoke(store, run))
    if as_json:
        emit_json(run.to_dict())
    else:
        table = Table(title=markup("Smoke ({}) of site '{}', run {}", run.set, name, run.run_id, style="table.title"))
        for column in ("scenario", "status", "seconds", "message"):
            table.add_column(column, overflow="fold")
        for r in run.results:
            table.add_row(
                plain(r.scenario), plain(r.status, STATUS_STYLE[r.status]), f"{r.seconds:.2f}", plain(r.message or "")
            )
        console.print(table)
        console.print(markup("reports: {}, {}", run.reports["ctrf"], run.reports["junit"]))
    if run.failed:
        raise typer.Exit(1)


def record_probes(store: Store, site: str, started_at: datetime, results: list[ProbeResult]) -> None:
    """One row per probe; the message names the failed steps (it may hold hostnames: private to operators)."""
    for r in results:
        failed = "; ".join(f"{s.name}: {s.error}" for s in r.steps if not s.ok)
        store.record_result(
            site=site,
            source="probe",
            name=r.probe,
            status=r.status,
            started_at=started_at,
            seconds=r.seconds,
            message=failed or r.reason,
        )


def record_smoke(store: Store, run: smoke.SmokeRun) -> None:
    """One row per scenario, each with the run's CTRF report (where its steps are)."""
    for r in run.results:
        store.record_result(
            site=run.site,
            source="smoke",
            name=r.scenario,
            status=r.status,
            started_at=datetime.fromtimestamp(r.started_at, UTC) if r.started_at else run.started_at,
            seconds=r.seconds,
            message=r.message,
            report=run.reports.get("ctrf"),
        )


def _record_once(settings: Settings, record: Callable[[Store], None]) -> None:
    """A one-shot run still reports (and exits by) its results when the store cannot take them: warned, not fatal."""
    try:
        with opened(settings) as store:
            record(store)
    except (HammersmithError, SQLAlchemyError) as exc:
        err_console.print(markup("[yellow]warning:[/] results not recorded in the store: {}", exc))


def reports_dir(settings: Settings, site: Site) -> Path:
    """smoke.reports_dir, relative to state_dir unless absolute."""
    return settings.state_dir / site.smoke.reports_dir


def every(
    stop: threading.Event, seconds: int, what: str, work: Callable[[], None], first_delay: float = 0.0
) -> threading.Thread | None:
    """Run `work` now (after `first_delay`) and then every `seconds` in a thread of its own; 0: never.

    Each schedule has its own thread, so a nightly deploy that takes 20 minutes delays neither
    the sweeps nor the probes. An exception is logged and the next run retries.
    """
    if seconds <= 0:
        return None

    def loop() -> None:
        if stop.wait(first_delay):
            return
        while not stop.is_set():
            try:
                work()
            except Exception as exc:
                log.error("%s failed: %s: %s", what, type(exc).__name__, exc)
            stop.wait(seconds)

    thread = threading.Thread(target=loop, name=what, daemon=True)
    thread.start()
    return thread


#: the stores the running schedules record into, by their stop event; `finish` closes them
_stores: dict[threading.Event, list[Store]] = {}


def schedule(settings: Settings, name: str, telemetry: Telemetry, stop: threading.Event) -> list[threading.Thread]:
    """The agent's probe and smoke schedules for one site, results into the telemetry (hence /metrics) and the
    store (an engine of their own, opened here and closed by `finish`)."""
    site = settings.sites[name]
    store = open_store(settings.effective_store_url, settings.state_dir)
    _stores.setdefault(stop, []).append(store)

    def run_probes() -> None:
        started_at = datetime.now(UTC)
        results = probes.run(name, site)
        telemetry.record_probes(name, results)
        record_probes(store, name, started_at, results)
        failed = [r.probe for r in results if r.status == "failed"]
        if failed:
            log.error("site %s: probe(s) failed: %s", name, ", ".join(failed))

    def run_smoke(smoke_set: smoke.SmokeSet) -> Callable[[], None]:
        def work() -> None:
            run = smoke.run_and_report(name, site, smoke_set, reports_dir(settings, site))
            telemetry.record_smoke(name, run)
            record_smoke(store, run)
            log.info(
                "site %s: smoke %s: %s", name, smoke_set, ", ".join(f"{r.scenario} {r.status}" for r in run.results)
            )

        return work

    threads = [every(stop, site.probes.interval_seconds, f"probes-{name}", run_probes)]
    for smoke_set, seconds in (
        ("cheap", site.smoke.cheap_interval_seconds),
        ("expensive", site.smoke.expensive_interval_seconds),
    ):
        # the latest report says when the set last ran: a restarted agent keeps the interval (no redeploy per restart)
        latest = reports_dir(settings, site) / f"latest-{name}-{smoke_set}.ctrf.json"
        age = time.time() - latest.stat().st_mtime if latest.exists() else float("inf")
        delay = max(0.0, seconds - age)
        threads.append(every(stop, seconds, f"smoke-{smoke_set}-{name}", run_smoke(smoke_set), delay))  # type: ignore[arg-type]
    return [t for t in threads if t is not None]


def finish(threads: list[threading.Thread], stop: threading.Event, timeout: float) -> None:
    """Stop the schedules and wait (up to `timeout`) for a running scenario to clean up what it created."""
    stop.set()
    busy = [t for t in threads if t.is_alive()]
    if busy:
        log.info("waiting up to %.0f s for %s to finish and clean up", timeout, ", ".join(t.name for t in busy))
    deadline = time.monotonic() + timeout
    for thread in busy:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.critical("%s still running at exit: what it created may be left behind", thread.name)
    for store in _stores.pop(stop, []):
        store.close()
