"""`hammersmith runbook list|show`: the runbook catalogue in the terminal (the agent serves it as HTML)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.table import Table

from hammersmith.cli import JsonOpt, console, emit_json
from hammersmith.cli.render import markup, plain
from hammersmith.react import runbooks

app = typer.Typer(no_args_is_help=True, help="Runbooks: one per alert and per hammer.")

_SEVERITY = {"critical": "bold red", "warning": "yellow"}


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every runbook: the alerts it serves, the hammers that fix it, minutes by hand."""
    catalogue = runbooks.catalogue()
    ordered = sorted(catalogue.values(), key=lambda r: (0 if r.alerts else 1, r.name.lower()))
    if as_json:
        emit_json([r.to_dict() for r in ordered])
        return
    table = Table(title=f"{len(ordered)} runbooks", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("title")
    table.add_column("severity", no_wrap=True)
    table.add_column("alerts")
    table.add_column("hammers")
    table.add_column("manual minutes", justify="right")
    for r in ordered:
        table.add_row(
            plain(r.name),
            plain(r.title),
            plain(r.severity, _SEVERITY[r.severity]),
            plain(", ".join(r.alerts)),
            plain(", ".join(r.hammers)),
            str(r.manual_minutes),
        )
    console.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Runbook name (an alert or a hammer).")], as_json: JsonOpt = False
) -> None:
    """One runbook, rendered in the terminal."""
    runbook = runbooks.get(name)
    if as_json:
        emit_json(runbook.to_dict() | {"body": runbook.body})
        return
    console.print(
        markup(
            "{}  {}  (about {} min by hand)",
            plain(runbook.severity, _SEVERITY[runbook.severity]),
            runbook.title,
            runbook.manual_minutes,
        )
    )
    console.print(Markdown(runbook.body))
