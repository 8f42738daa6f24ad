"""`hammersmith maint start|list|show|end|retire`: take nodes out of service and bring them back (see
docs/maintenance.md). Reasons, tickets and names are operators' text: plain, never read as Rich markup."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, SiteOpt, console, emit_json
from hammersmith.cli.quantify import opened
from hammersmith.cli.render import markup, plain
from hammersmith.errors import HammersmithError
from hammersmith.maintenance import workflow
from hammersmith.maintenance.times import parse_time
from hammersmith.store.maintenance import MaintenanceRow

app = typer.Typer(help="Maintenance: take nodes out of service (Blazar lease, Ironic maintenance, silence) and back.")

STATE_STYLE = {
    "requested": "cyan",
    "waiting": "yellow",
    "in-maintenance": "magenta",
    "returning": "blue",
    "done": "green",
    "cancelled": "dim",
}
NodesArg = Annotated[list[str] | None, typer.Argument(help="Node names or UUIDs.", show_default=False)]
ResourceClassOpt = Annotated[str | None, typer.Option("--resource-class", help="Every node of this resource class.")]
NodeTypeOpt = Annotated[
    str | None, typer.Option("--node-type", help="Every node whose Blazar host has this node_type.")
]
SelectorOpt = Annotated[
    list[str] | None, typer.Option("--selector", help="KEY=VALUE on the node's Ironic `extra`; repeatable.")
]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who does it (default: your OS user).")]


def _time(text: str | None, now: datetime, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _selector(pairs: list[str] | None) -> dict[str, str]:
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--selector")
        found[key] = value
    return found


def _shown(row: MaintenanceRow, column: str) -> str:
    """What a maintenance adopted from a human does not know is shown as `unknown`, never left blank."""
    value = getattr(row, column)
    if value is None:
        return workflow.UNKNOWN if row.kind == "adopted" else "-"
    return f"{value:%Y-%m-%d %H:%M}" if isinstance(value, datetime) else str(value)


def _table(rows: list[MaintenanceRow], title: str) -> Table:
    table = Table(title=markup("{}", title, style="table.title"))
    for column in ("id", "node", "kind", "state", "by", "ticket", "start (UTC)", "until (UTC)"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason / step", overflow="fold", ratio=1)
    for r in rows:
        detail = plain(r.reason)
        if r.step:
            detail.append_text(plain(f"\nstep: {r.step}", "dim"))
        if r.error:
            detail.append_text(plain(f"\nerror: {r.error}", "bold red"))
        table.add_row(
            str(r.id),
            plain(r.node),
            plain(r.kind),
            plain(r.state, STATE_STYLE.get(r.state, "")),
            plain(_shown(r, "by")),
            plain(_shown(r, "ticket")),
            f"{r.start_at:%Y-%m-%d %H:%M}",
            plain(_shown(r, "until")),
            detail,
        )
    return table


def _report(rows: list[MaintenanceRow], title: str, as_json: bool) -> None:
    if as_json:
        emit_json([r.to_dict() for r in rows])
    else:
        console.print(_table(rows, title))
    if any(r.error for r in rows):
        raise typer.Exit(1)


def _chosen(
    ctx: workflow.Context,
    nodes: list[str] | None,
    resource_class: str | None,
    node_type: str | None,
    selector: list[str] | None,
) -> list[dict[str, Any]]:
    """The nodes a command names, by name or UUID, or by class, node type or `key=value` selector."""
    return workflow.select_nodes(
        ctx, nodes or [], resource_class=resource_class, node_type=node_type, selector=_selector(selector)
    )


@app.command("start")
def start(
    nodes: NodesArg = None,
    reason: Annotated[str, typer.Option("--reason", help="Why: what an operator reading Ironic needs to know.")] = "",
    ticket: Annotated[str | None, typer.Option("--ticket", help="Ticket ID.")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="ISO time or 2h / 1d (default: maintenance.default_hours).")
    ] = None,
    when: Annotated[str | None, typer.Option("--when", help="Not before this time (ISO, or 30m / 2h).")] = None,
    by: ByOpt = None,
    resource_class: ResourceClassOpt = None,
    node_type: NodeTypeOpt = None,
    selector: SelectorOpt = None,
    site: SiteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take nodes out of service: a Blazar maintenance lease after the current user lease, then Ironic maintenance
    with a structured reason (who, why, ticket, until) and a silence of the node's alerts."""
    if not reason.strip():
        raise typer.BadParameter("say why", param_hint="--reason")
    settings = config_mod.load(OPTIONS.config)
    with workflow.context(settings, site) as ctx:
        chosen = _chosen(ctx, nodes, resource_class, node_type, selector)
        rows = workflow.start(
            ctx,
            chosen,
            reason=reason,
            by=by or workflow.default_by(),
            ticket=ticket,
            until=_time(until, ctx.now, "--until"),
            when=_time(when, ctx.now, "--when"),
        )
    _report(rows, f"{len(rows)} maintenance(s) started", as_json)


@app.command("end")
def end(
    nodes: NodesArg = None,
    by: ByOpt = None,
    resource_class: ResourceClassOpt = None,
    node_type: NodeTypeOpt = None,
    selector: SelectorOpt = None,
    site: SiteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Return nodes to service (unset maintenance, optional inspect and clean, provide, end the lease, expire the
    silence, smoke); a step that fails stops there, and `maint end` again resumes from it."""
    settings = config_mod.load(OPTIONS.config)
    with workflow.context(settings, site) as ctx:
        chosen = _chosen(ctx, nodes, resource_class, node_type, selector)
        rows = workflow.end(ctx, chosen, by=by or workflow.default_by())
    _report(rows, f"{len(rows)} maintenance(s) ended", as_json)


@app.command("retire")
def retire(
    nodes: NodesArg = None,
    reason: Annotated[str, typer.Option("--reason", help="Why the node leaves for good.")] = "",
    by: ByOpt = None,
    resource_class: ResourceClassOpt = None,
    node_type: NodeTypeOpt = None,
    selector: SelectorOpt = None,
    site: SiteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Retire nodes in Ironic (`retired` with the reason); retirement-enforcer then takes them out of Blazar."""
    if not reason.strip():
        raise typer.BadParameter("say why", param_hint="--reason")
    settings = config_mod.load(OPTIONS.config)
    with workflow.context(settings, site) as ctx:
        chosen = _chosen(ctx, nodes, resource_class, node_type, selector)
        rows = workflow.retire(ctx, chosen, reason=reason, by=by or workflow.default_by())
    _report(rows, f"{len(rows)} node(s) retired", as_json)


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Also done and cancelled ones.")] = False,
    site: SiteOpt = None,
    limit: Annotated[int, typer.Option("--limit")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Maintenances of a site, newest first: open ones (with --all, every one), humans' adopted ones included."""
    settings = config_mod.load(OPTIONS.config)
    name, _ = settings.site(site)
    with opened(settings) as store:
        rows = store.maintenances(site=name, open_only=not all_, limit=limit)
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    console.print(_table(rows, f"{len(rows)} {'' if all_ else 'open '}maintenance(s) at site {name}"))


@app.command("show")
def show(
    node: Annotated[str, typer.Argument(help="A maintenance ID, or a node name or UUID (its latest maintenance).")],
    site: SiteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One maintenance with its ledger: every step, who did it, and where it stopped."""
    settings = config_mod.load(OPTIONS.config)
    name, _ = settings.site(site)
    with opened(settings) as store:
        found = store.maintenance(int(node)) if node.isdigit() else None
        if found is None:
            latest = store.maintenances(site=name, node=node, limit=1)
            found = latest[0] if latest else None
        if found is None:
            raise HammersmithError(f"no maintenance {node!r} at site {name}", hint="hammersmith maint list --all")
        steps = [
            a
            for a in store.actions(site=name, hammer=workflow.HAMMER, node=found.node_uuid, limit=500)
            if a.params.get("maintenance") == found.id
        ]
    if as_json:
        emit_json({**found.to_dict(), "steps": [a.to_dict() for a in steps]})
        return
    console.print(_table([found], f"maintenance #{found.id} of {found.node}"))
    table = Table(title=markup("{} step(s)", len(steps), style="table.title"))
    for column in ("when (UTC)", "step", "outcome", "by / what"):
        table.add_column(column, overflow="fold")
    for a in reversed(steps):
        style = "green" if a.outcome == "succeeded" else "bold red"
        when = a.planned_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(when, plain(a.kind), plain(a.outcome, style), plain(a.reason or ""))
    console.print(table)
