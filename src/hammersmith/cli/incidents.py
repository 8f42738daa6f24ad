"""`hammersmith incidents [--dead] [show ID] [resolve ID]`: what Alertmanager told the agent, what it did about each
alert, and what a person did (the minutes a hand fix took are what `hammersmith toil` weighs automation against).

Every value shown comes from an alert (anyone with the webhook token): it is plain text, never read as Rich markup.
"""

from __future__ import annotations

import getpass
import math
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, console, emit_json
from hammersmith.cli.quantify import opened
from hammersmith.cli.render import markup, plain
from hammersmith.errors import HammersmithError
from hammersmith.store.incidents import HAND_FIX
from hammersmith.store.models import IncidentRow

app = typer.Typer(help="Incidents from the Alertmanager webhook, with their timelines.")

KIND_STYLE = {
    "received": "cyan",
    "duplicate": "dim",
    "resolved": "green",
    "action": "bold green",
    "no_action": "yellow",
    "error": "bold red",
    "hand_fix": "magenta",
}


def timeline_summary(row: IncidentRow) -> Text:
    """received -> action -> resolved (duplicates counted, not repeated), then the deciding event's words."""
    kinds: list[str] = []
    duplicates = 0
    for event in row.events:
        if event.kind == "duplicate":
            duplicates += 1
        else:
            kinds.append(f"[{KIND_STYLE.get(event.kind, '')}]{event.kind}[/]")
    decided = next((e.detail for e in row.events if e.kind in ("action", "no_action", "error")), "")
    text = " -> ".join(kinds) + (f" (+{duplicates} duplicate{'s' if duplicates > 1 else ''})" if duplicates else "")
    return markup(text + ": {}", decided) if decided else markup(text)


@app.callback(invoke_without_command=True)
def incidents(
    ctx: typer.Context,
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents still firing.")] = False,
    site: Annotated[str | None, typer.Option("--site", help="Only this site (default: every site).")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 200,
    dead: Annotated[
        bool, typer.Option("--dead", help="Deliveries dead-lettered after their tries, and alerts set aside.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Incidents, newest first: alert, node, status, what the hammer did, and the runbook."""
    if ctx.invoked_subcommand is not None:
        return
    settings = config_mod.load(OPTIONS.config)
    if dead:
        dead_letters(settings, limit, as_json)
        return
    with opened(settings) as store:
        rows = store.incidents(open_only=open_only, site=site, limit=limit)
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    table = Table(title=f"{len(rows)} {'open ' if open_only else ''}incident(s)")
    for column in ("id", "opened (UTC)", "site", "alert", "node", "status", "hammer"):
        table.add_column(column, no_wrap=True)
    table.add_column("timeline", overflow="fold", ratio=2)
    table.add_column("runbook", overflow="fold", ratio=1)
    for r in rows:
        status = "[bold red]firing[/]" if r.status == "firing" else "[green]resolved[/]"
        table.add_row(
            str(r.id),
            r.opened_at.strftime("%Y-%m-%d %H:%M:%S"),
            plain(r.site),
            plain(r.alertname),
            plain(r.node or "-"),
            status,
            plain(r.hammer or "-"),
            timeline_summary(r),
            plain(r.runbook_url or "-"),
        )
    console.print(table)


def dead_letters(settings: config_mod.Settings, limit: int, as_json: bool) -> None:
    """What needs a human: deliveries that failed every try (with the last error), and alerts the schema refused."""
    with opened(settings) as store:
        rows = store.dead_deliveries(limit=limit)
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    table = Table(title=f"{len(rows)} delivery(ies) dead-lettered or with alerts set aside")
    for column in ("delivery", "received (UTC)", "tries", "state"):
        table.add_column(column, no_wrap=True)
    table.add_column("why", overflow="fold")
    for r in rows:
        state = "[bold red]dead[/]" if r.dead_at else ("processed" if r.processed_at else "pending")
        why = [f"last error: {r.last_error}"] if r.dead_at else []
        for aside in r.set_aside:
            problems = "; ".join(f"{e['field']}: {e['problem']}" for e in aside["errors"])
            why.append(f"alert {aside['index']} set aside: {problems}")
        table.add_row(
            str(r.id), r.received_at.strftime("%Y-%m-%d %H:%M:%S"), str(r.attempts), state, plain("\n".join(why))
        )
    console.print(table)


@app.command("show")
def show(
    incident_id: Annotated[int, typer.Argument(help="Incident id (see `hammersmith incidents`).")],
    as_json: JsonOpt = False,
) -> None:
    """One incident: its alert's labels and annotations, runbook, ledger row, and full timeline."""
    settings = config_mod.load(OPTIONS.config)
    with opened(settings) as store:
        row = store.incident(incident_id)
    if row is None:
        raise HammersmithError(f"no incident {incident_id}", hint="list them with: hammersmith incidents")
    if as_json:
        emit_json(row.to_dict())
        return
    status = "[bold red]firing[/]" if row.status == "firing" else f"[green]resolved[/] at {row.resolved_at}"
    console.print(markup(f"[bold]Incident {row.id}[/]: {{}} at site {{}} -- {status}", row.alertname, row.site))
    node = row.node or "-"
    console.print(markup(f"fingerprint {row.fingerprint}, started {row.starts_at.isoformat()}, node {{}}", node))
    ledger = f", ledger row #{row.action_id}" if row.action_id else ""
    console.print(markup("hammer: {}" + ledger, row.hammer or "(none mapped)"))
    if row.action_id:
        console.print(markup("  see: hammersmith ledger --site {} --node {}", row.site, node))
    console.print(markup("runbook: {}", row.runbook_url or "-"))
    for key, value in sorted(row.annotations.items()):
        console.print(plain(f"{key}: {value}"))
    console.print(plain("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(row.labels.items()))))
    table = Table(title="Timeline")
    for column in ("at (UTC)", "event"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail", overflow="fold")
    for event in row.events:
        style = KIND_STYLE.get(event.kind, "")
        table.add_row(event.at.strftime("%Y-%m-%d %H:%M:%S"), f"[{style}]{event.kind}[/]", plain(event.detail))
    console.print(table)


@app.command("resolve")
def resolve(
    incident_id: Annotated[int, typer.Argument(help="Incident id (see `hammersmith incidents`).")],
    minutes: Annotated[float, typer.Option("--minutes", help="Minutes of a person's time the fix took.")],
    note: Annotated[str, typer.Option("--note", help="What was done (kept in the incident and the ledger).")],
    by: Annotated[str | None, typer.Option("--by", help="Who fixed it (default: your login name).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Close an incident fixed by hand, with the minutes it took; on one already resolved, the time is still
    recorded (and said so)."""
    if not math.isfinite(minutes) or minutes < 0:
        raise typer.BadParameter(f"{minutes:g} is not a number of minutes >= 0", param_hint="--minutes")
    if not note.strip():
        raise typer.BadParameter("say what was done: the next person reads it", param_hint="--note")
    who = (by if by is not None else getpass.getuser()).strip()
    if not who:
        raise typer.BadParameter("name who fixed it", param_hint="--by")
    settings = config_mod.load(OPTIONS.config)
    with opened(settings) as store:
        row = store.resolve_incident_by_hand(incident_id, by=who, minutes=minutes, note=note)
    if row is None:
        raise HammersmithError(f"no incident {incident_id}", hint="list them with: hammersmith incidents")
    already = bool(row.events) and row.events[-1].kind == HAND_FIX
    if as_json:
        emit_json({**row.to_dict(), "already_resolved": already})
        return
    if already:
        console.print(
            markup(
                f"[yellow]incident {row.id} was already resolved[/] ({{}}): recorded {minutes:g} min by {{}} anyway",
                row.resolved_at.isoformat(timespec="seconds") if row.resolved_at else "-",
                who,
            )
        )
    else:
        console.print(
            markup(f"[green]resolved[/] incident {row.id} ({{}}) by hand: {minutes:g} min by {{}}", row.alertname, who)
        )
    console.print(markup("note: {}", note.strip()))
