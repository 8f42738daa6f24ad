"""`hammersmith sweep|run|ledger|breaker`: the hammers' agent and its audit trail."""

from __future__ import annotations

import gc
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, SiteOpt, console, emit_json
from hammersmith.cli import detect as cli_detect
from hammersmith.cli.quantify import ListenOpt, agent_logging, listen_on, opened, serving, stop_on_signals
from hammersmith.cli.render import markup, plain
from hammersmith.cloud.snapshot import Snapshot
from hammersmith.maintenance import windows
from hammersmith.quantify.collect import observe
from hammersmith.quantify.collectors.schedule import watch
from hammersmith.quantify.telemetry import Telemetry, schedule
from hammersmith.react import incidents
from hammersmith.react.sweep import Result, Sweeper
from hammersmith.web.state import WebState

OUTCOME_STYLE = {
    "fixed": "bold green",
    "succeeded": "green",
    "ineffective": "bold red",
    "unverified": "red",
    "failed": "bold red",
    "refused": "yellow",
    "observed": "cyan",
    "escalated": "bold magenta",
    "in_flight": "red",
    "reconciled": "blue",
}


def render_result(result: Result) -> None:
    table = Table(
        title=markup(
            "Sweep of site '{}' ({}): {} finding(s)",
            result.site,
            "apply" if result.apply else "observe only",
            len(result.findings),
            style="table.title",
        )
    )
    for column in ("node", "hammer", "action", "mode", "outcome", "why / before -> after"):
        table.add_column(column, overflow="fold")
    for a in result.actions:
        detail = a["reason"]
        if a.get("before") and a.get("after") and "provision_state" in a["before"]:
            detail = f"{a['before']['provision_state']} -> {a['after'].get('provision_state')}"
        style = OUTCOME_STYLE.get(a["outcome"], "")
        table.add_row(
            *map(plain, (a["node"], a["hammer"], a["kind"], a["mode"])), plain(a["outcome"], style), plain(detail[:200])
        )
    planned = {(a["hammer"], a["node_uuid"]) for a in result.actions}
    for f in result.findings:
        if (f.check, f.node_uuid) not in planned:
            table.add_row(plain(f.node_name), plain(f.check), "report", "-", "[cyan]reported[/]", plain(f.summary))
    console.print(table)
    if result.breaker:
        console.print(
            markup(
                "[bold red]circuit breaker open:[/] {} (hammersmith breaker reset --site {})",
                result.breaker,
                result.site,
            )
        )
    for name, why in result.skipped.items():
        console.print(markup("[yellow]{} skipped:[/] {}", name, why))
    for v in result.verified:
        console.print(markup("earlier action #{} on {}: {}", v["action_id"], v["node"], v["outcome"]))
    if result.error:
        console.print(markup("[bold red]sweep failed after its snapshot:[/] {}", result.error))
    for name, count in result.deferred.items():
        console.print(markup("{} more {} action(s) deferred to later sweeps by its rate limit", count, name))


def sweep(
    site: SiteOpt = None,
    once: Annotated[bool, typer.Option("--once", help="One sweep, then exit (the default).")] = True,
    apply: Annotated[bool, typer.Option("--apply", help="Act where the hammer's mode is `apply`.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One sweep of a site: detect, plan, and (with --apply) act through the safety layer."""
    settings = config_mod.load(OPTIONS.config)
    name, _ = settings.site(site)
    with opened(settings) as store:
        sweeper = Sweeper(settings, name, store)
        try:
            result = sweeper.sweep(apply=apply)
        finally:
            sweeper.close()
    if as_json:
        emit_json({**result.summary(), "actions": result.actions, "findings": [f.to_dict() for f in result.findings]})
    else:
        render_result(result)
    if result.error:  # recorded and notified; the exit status says so too
        raise typer.Exit(1)


def run(site: SiteOpt = None, listen: ListenOpt = None, as_json: JsonOpt = False) -> None:
    """The agent: sweep one site every `sweep_interval_seconds`, acting by mode, and serve its /metrics
    and the Alertmanager webhook (POST /api/v1/alertmanager: alerts -> incidents -> hammers).

    Stops cleanly on SIGTERM. A sweep that fails is logged and the next one retries.
    """
    agent_logging()
    settings = config_mod.load(OPTIONS.config)
    name, site_cfg = settings.site(site)
    http = listen_on(settings, listen)
    stop = stop_on_signals()
    telemetry = Telemetry([name], {name: schedule(site_cfg, agent=True)})
    watch(name, site_cfg)  # its part-time schedule on /metrics
    with (
        opened(settings) as store,
        incidents.running(settings, name, store) as worker,
        serving(http, telemetry, settings=settings, worker=worker, web=(web := WebState(settings, store))),
    ):
        sweeper = Sweeper(settings, name, store, observer=telemetry.observer(name))

        def sweep_once() -> Snapshot | None:
            result = sweeper.sweep(apply=True)
            if result.snapshot is not None:
                web.latest[name] = result.snapshot
                # one full collection per sweep, then the survivors (the snapshot the pages read: at 10,000 nodes it
                # doubles a collection's pause) are left out of the automatic ones, which otherwise stop page
                # answers for up to 200 ms (bench/dashboard.py); unfrozen first, so nothing is kept from collection
                gc.unfreeze()
                gc.collect()
                gc.freeze()
            emit_json(result.summary()) if as_json else render_result(result)
            return result.snapshot

        # probes and smoke sets on their own intervals, each in its own thread: a deploy never delays a sweep
        detectors = cli_detect.schedule(settings, name, telemetry, stop)
        try:
            while not stop.is_set():
                observe(telemetry, store, name, site_cfg.policy, sweep_once)
                stop.wait(site_cfg.sweep_interval_seconds)
        finally:
            cli_detect.finish(detectors, stop, site_cfg.smoke.timeout_seconds)
            sweeper.close()
    console.print(markup("agent for site {} stopped", repr(name)))


def ledger(
    site: Annotated[str | None, typer.Option("--site", help="Only this site (default: every site).")] = None,
    hammer: Annotated[str | None, typer.Option("--hammer")] = None,
    node: Annotated[str | None, typer.Option("--node", help="Node name or UUID.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time, or an age like 2h / 7d.")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Every action hammersmith planned, refused, observed or took, newest first."""
    settings = config_mod.load(OPTIONS.config)
    with opened(settings) as store:
        rows = store.actions(site=site, hammer=hammer, node=node, since=parse_since(since), limit=limit)
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    sites = {r.site for r in rows}
    where = markup(" at site {}", next(iter(sites))) if len(sites) == 1 else ""
    table = Table(title=markup("Ledger: {} action(s){}", len(rows), where, style="table.title"))
    columns = ["when (UTC)", *(["site"] if len(sites) > 1 else []), "node", "hammer", "action", "outcome"]
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    for r in rows:
        style = OUTCOME_STYLE.get(r.outcome, "")
        cells = [
            r.planned_at.strftime("%H:%M:%S"),
            *([r.site] if len(sites) > 1 else []),
            r.node_name or r.node_uuid,
            r.hammer,
            r.kind,
        ]
        table.add_row(*map(plain, cells), plain(r.outcome, style), plain((r.error or r.reason or "")[:160]))
    console.print(table)


def parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value[-1] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: use an ISO time or an age like 30m, 2h, 7d", param_hint="--since"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


breaker_app = typer.Typer(no_args_is_help=True, help="The fleet circuit breaker.")


@breaker_app.command("status")
def breaker_status(site: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """Is the breaker open, since when, and why; pauses; a part-time site offline as scheduled."""
    settings = config_mod.load(OPTIONS.config)
    name, site_cfg = settings.site(site)
    with opened(settings) as store:
        state = store.breaker(name)
        pauses = store.pauses(name)
    info = {
        "site": name,
        "open": bool(state and state.is_open),
        "reason": state.reason if state else None,
        "opened_at": state.opened_at if state else None,
        "pauses": [asdict(p) for p in pauses],
        "schedule": windows.state(site_cfg, datetime.now(UTC)).to_dict() if site_cfg.schedules else None,
    }
    if as_json:
        emit_json(info)
        return
    if info["open"]:
        console.print(markup("[bold red]OPEN[/] since {}: {}", info["opened_at"], info["reason"]))
    else:
        console.print(markup("[green]closed[/] (site {})", name))
    for p in pauses:
        console.print(markup("[yellow]paused[/] {}: {}", "every hammer" if p.hammer == "*" else p.hammer, p.why))
    if info["schedule"] and info["schedule"]["offline"]:
        console.print(markup("[yellow]offline as scheduled until {}[/]", info["schedule"]["until"]))


@breaker_app.command("open")
def breaker_open(
    reason: Annotated[str, typer.Option("--reason", help="Why; shown in every refusal until reset.")],
    site: SiteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open the breaker by hand: nothing is applied at the site until `breaker reset`."""
    import getpass

    settings = config_mod.load(OPTIONS.config)
    name, _ = settings.site(site)
    why = f"opened by {getpass.getuser()}: {reason}"
    with opened(settings) as store:
        opened_now = store.open_breaker(name, why)
        state = store.breaker(name)
    shown = state.reason if state else why
    emit_json({"site": name, "opened": opened_now, "reason": shown}) if as_json else console.print(
        markup("breaker for {} {}: {}", name, "opened" if opened_now else "was already open", shown)
    )


@breaker_app.command("reset")
def breaker_reset(site: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """Close the breaker after a human has looked (recorded with who did it)."""
    import getpass

    settings = config_mod.load(OPTIONS.config)
    name, _ = settings.site(site)
    with opened(settings) as store:
        was_open = store.reset_breaker(name, by=getpass.getuser())
    emit_json({"site": name, "reset": was_open}) if as_json else console.print(
        markup("breaker for {} {}", name, "reset" if was_open else "was not open")
    )
