"""`hammersmith toil`: which known error to automate next, from hammersmith's own records."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, console, emit_json
from hammersmith.cli.quantify import opened
from hammersmith.cli.render import markup, plain
from hammersmith.react.toil import WINDOW_DAYS, KnownError, automate_next, rank


def toil(
    site: Annotated[str | None, typer.Option("--site", help="One site (default: every site of the config).")] = None,
    days: Annotated[
        float, typer.Option("--days", min=1, max=3650, help="How far back to count (each source as far as kept).")
    ] = WINDOW_DAYS,
    as_json: JsonOpt = False,
) -> None:
    """Rank every known error by the time automating it saves (the xkcd five-year budget)."""
    settings = config_mod.load(OPTIONS.config)
    if site is not None:
        settings.site(site)  # an unknown site is an error, not an empty ranking
    with opened(settings) as store:
        errors = rank(store, site=site, settings=settings, days=days)
    if as_json:
        emit_json([e.to_dict() for e in errors])
        return
    todo = {e.name for e in automate_next(errors)[:5]}
    where = f"site {site}" if site else "every site"
    table = Table(
        title=markup(
            f"Known errors at {{}}, last {days:g} days, by five-year budget (xkcd 1205); bold: automate next",
            where,
            style="table.title",
        )
    )
    table.add_column("known error", overflow="fold")
    for column in ("per week", "per month", "manual min", "hammer min", "saved", "5-year budget", "automated"):
        table.add_column(column, justify="right", no_wrap=True)
    for e in errors:
        table.add_row(
            plain(e.name, "bold" if e.name in todo else ""),
            f"{e.per_week:.1f}",
            f"{e.per_month:.1f}",
            f"{e.manual_minutes:g}" + ("*" if e.hand_fixes else ""),
            "-" if e.hammer_minutes is None else f"{e.hammer_minutes:g}",
            duration(e.saved_minutes),
            duration(e.budget_5y_minutes),
            _automated(e),
        )
    console.print(table)
    console.print(
        "manual min: * = median of the hand fixes recorded (`hammersmith incidents resolve`), else the runbook's; "
        "saved: verified hammer fixes x manual min; budget: occurrences a year x 5 x manual min"
    )


def duration(minutes: float) -> str:
    """Minutes as a person reads an amount of work: 45 min, 6.5 h, 12 d (days of 24 h)."""
    if minutes < 60:
        return f"{minutes:.0f} min"
    if minutes < 24 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / (24 * 60):.1f} d"


def _automated(error: KnownError) -> str:
    if error.automated:
        return "[green]yes[/]"
    return "[bold yellow]no[/]" if error.budget_5y_minutes > 0 else "no"
