"""`hammersmith notices [--pending] [--site S]`: what users were (or, in observe mode, would have been) told.

Subjects, addresses and errors come from Keystone and users' leases: plain text, never read as Rich markup.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, console, emit_json
from hammersmith.cli.quantify import opened
from hammersmith.cli.render import markup, plain

STATUS_STYLE = {"pending": "cyan", "sending": "yellow", "sent": "green", "failed": "bold red", "no-recipient": "red"}


def notices(
    pending_only: Annotated[bool, typer.Option("--pending", help="Only notices previewed and not sent.")] = False,
    site: Annotated[str | None, typer.Option("--site", help="Only this site (default: every site).")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Notices to users, newest first: kind, what about, to whom, and whether it went."""
    settings = config_mod.load(OPTIONS.config)
    with opened(settings) as store:
        rows = store.notices(site=site, status="pending" if pending_only else None, limit=limit)
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    title = markup("{} {}notice(s)", len(rows), "pending " if pending_only else "", style="table.title")
    table = Table(title=title)
    for column in ("site", "kind"):
        table.add_column(column, no_wrap=True)
    table.add_column("subject", overflow="fold", ratio=1)
    table.add_column("recipients", overflow="fold", ratio=1)
    table.add_column("status", no_wrap=True)
    table.add_column("created / sent (UTC)", no_wrap=True)
    for r in rows:
        when = r.created_at.strftime("%Y-%m-%d %H:%M")
        if r.sent_at:
            when += f"\n{r.sent_at:%Y-%m-%d %H:%M}"
        status = plain(r.status, STATUS_STYLE.get(r.status, ""))
        if r.error:
            status.append_text(plain(f"\n{r.error}", "dim"))
        table.add_row(
            plain(r.site), plain(r.kind), plain(r.subject), plain(", ".join(r.recipients) or "-"), status, when
        )
    console.print(table)
