"""`hammersmith pause|resume`: a human stops the hammers at a site from acting (findings are still recorded)."""

from __future__ import annotations

import getpass
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, SiteOpt, console, emit_json
from hammersmith.cli.quantify import opened
from hammersmith.cli.render import markup
from hammersmith.maintenance.times import parse_time
from hammersmith.react import hammers
from hammersmith.store.pauses import ALL

HammerOpt = Annotated[str, typer.Option("--hammer", help="One hammer (default: every hammer at the site).")]


def pause(
    reason: Annotated[str, typer.Option("--reason", help="Why; shown in every refusal while paused.")],
    site: SiteOpt = None,
    hammer: HammerOpt = ALL,
    until: Annotated[
        str | None, typer.Option("--until", help="ISO time, or a duration like 30m / 2h / 1d (default: until resumed).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop every hammer (or one) from acting at a site; they still detect and record findings."""
    settings = config_mod.load(OPTIONS.config)
    name, _ = settings.site(site)
    _known(hammer)
    if not reason.strip():
        raise typer.BadParameter("say why (it is shown in every refusal while paused)", param_hint="--reason")
    now = datetime.now(UTC)
    end = None
    if until is not None:
        try:
            end = parse_time(until, now)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--until") from None
        if end <= now:
            raise typer.BadParameter(f"{until!r} is in the past: nothing would be paused", param_hint="--until")
    with opened(settings) as store:
        row = store.pause(name, hammer, reason.strip(), getpass.getuser(), end, now)
    if as_json:
        emit_json(asdict(row))
        return
    which = "every hammer" if hammer == ALL else f"hammer {hammer}"
    console.print(markup("[bold yellow]paused[/] {} at site {} (#{}): {}", which, name, row.id, row.why))


def resume(site: SiteOpt = None, hammer: HammerOpt = ALL, as_json: JsonOpt = False) -> None:
    """End the pauses at a site (every pause, or one hammer's); hammers act again from the next sweep."""
    settings = config_mod.load(OPTIONS.config)
    name, _ = settings.site(site)
    _known(hammer)
    with opened(settings) as store:
        resumed = store.resume(name, hammer, getpass.getuser())
        still = store.pauses(name)
    if as_json:
        emit_json({"site": name, "resumed": [asdict(r) for r in resumed], "paused": [asdict(p) for p in still]})
        return
    if not resumed:
        console.print(markup("nothing was paused at site {} for {}", name, "any hammer" if hammer == ALL else hammer))
    for row in resumed:
        console.print(markup("[green]resumed[/] {} at site {} (was: {})", row.hammer, name, row.why))
    for row in still:
        console.print(markup("[yellow]still paused[/]: {} ({})", row.hammer, row.why))


def _known(hammer: str) -> None:
    """A typo must not pause nothing silently: name the hammers there are."""
    known = sorted(hammers.load())
    if hammer != ALL and hammer not in known:
        raise typer.BadParameter(f"no hammer named {hammer!r}; known: {', '.join(known)}", param_hint="--hammer")
