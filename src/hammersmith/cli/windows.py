"""`hammersmith windows [--site S] [--days N]`: a part-time site's upcoming offline windows and their nodes.

Read from the config (and the calendar files it names) and the store; no OpenStack call, so it answers while the
site itself is away.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, console, emit_json
from hammersmith.cli.quantify import opened
from hammersmith.cli.render import markup, plain
from hammersmith.maintenance import windows as windows_mod
from hammersmith.store import Store


def windows(
    site: Annotated[str | None, typer.Option("--site", help="Only this site (default: every site).")] = None,
    days: Annotated[float, typer.Option("--days", min=0, max=366, help="How far ahead to look.")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Upcoming offline windows per site: when, which schedule, which nodes, and the maintenances placed."""
    settings = config_mod.load(OPTIONS.config)
    names = [settings.site(site)[0]] if site else sorted(settings.sites)
    now = datetime.now(UTC)
    with opened(settings) as store:
        report = [_site(store, name, settings.sites[name], now, timedelta(days=days)) for name in names]
    if as_json:
        emit_json(report)
        return
    for entry in report:
        _render(entry)


def _site(store: Store, name: str, site: config_mod.Site, now: datetime, ahead: timedelta) -> dict[str, Any]:
    """One site's state and windows; a window's maintenances are the store's rows of kind window ending with it."""
    schedules = {s.name: s for s in site.schedules}
    rows = [r for r in store.maintenances(site=name, limit=10_000) if r.kind == windows_mod.KIND]
    found = windows_mod.site_windows(site, now, now + ahead)
    return {
        "site": name,
        "state": windows_mod.state(site, now).to_dict() if site.schedules else None,
        "windows": [
            window.to_dict()
            | {
                "nodes": list(schedules[window.schedule].nodes),
                "whole_site": not schedules[window.schedule].nodes,
                "maintenances": [
                    {"id": r.id, "node": r.node, "state": r.state, "error": r.error}
                    for r in rows
                    if r.until == window.end and r.reason == windows_mod.REASON.format(window.schedule)
                ],
            }
            for window in found
        ],
    }


def _render(entry: dict[str, Any]) -> None:
    state = entry["state"]
    if state is None:
        console.print(markup("site {}: no schedules (always online)", entry["site"]))
        return
    if state["offline"]:
        console.print(markup("site {}: [yellow]offline as scheduled until {}[/]", entry["site"], state["until"]))
    else:
        console.print(markup("site {}: online; next window starts {}", entry["site"], state["next_change"] or "-"))
    table = Table(title=markup("{} window(s)", len(entry["windows"]), style="table.title"))
    for column in ("schedule", "start (UTC)", "end (UTC)", "nodes", "maintenances"):
        table.add_column(column, overflow="fold")
    for window in entry["windows"]:
        placed = ", ".join(f"{m['node']} ({m['state']})" for m in window["maintenances"]) or "-"
        table.add_row(
            plain(window["schedule"]),
            window["start"][:16].replace("T", " "),
            window["end"][:16].replace("T", " "),
            plain("whole site" if window["whole_site"] else ", ".join(window["nodes"])),
            plain(placed),
        )
    console.print(table)
