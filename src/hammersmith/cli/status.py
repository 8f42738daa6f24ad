"""The public status page's posts: `hammersmith status publish|resolve|list`.

A post is the only text the public page shows that a person wrote; everything else there is computed. Who
published it goes to the ledger, never to the page.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, SiteOpt, console, emit_json
from hammersmith.cli.quantify import opened
from hammersmith.cli.render import markup, plain
from hammersmith.errors import HammersmithError
from hammersmith.store.status_posts import IMPACTS, StatusPostRow

app = typer.Typer(
    no_args_is_help=True, help="The public status page's posts: `hammersmith status publish|resolve|list`."
)

IMPACT_STYLE = {"down": "bold red", "degraded": "yellow", "maintenance": "cyan", "info": "dim"}


@app.command("publish")
def publish(
    title: Annotated[str, typer.Option("--title", help="One line, shown as the post's heading.")],
    body: Annotated[str, typer.Option("--body", help="What users should know; shown as written (plain text).")],
    impact: Annotated[str, typer.Option("--impact", help=f"One of {', '.join(IMPACTS)}.")],
    site: SiteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Publish an ongoing incident or notice on the public status page (everyone can read it at once)."""
    if impact not in IMPACTS:
        raise typer.BadParameter(f"{impact!r}: use one of {', '.join(IMPACTS)}", param_hint="--impact")
    if not title.strip():
        raise typer.BadParameter("the title is what the page shows first: it cannot be empty", param_hint="--title")
    settings = config_mod.load(OPTIONS.config)
    name, _ = settings.site(site)
    with opened(settings) as store:
        post = store.publish_status(name, title, body, impact, getpass.getuser())
    if as_json:
        emit_json(post.to_dict())
        return
    console.print(markup("[green]published[/] #{} at site {} ({}): {}", post.id, name, impact, post.title))
    console.print(markup("resolve it with: hammersmith status resolve {}", post.id))


@app.command("resolve")
def resolve(post_id: Annotated[int, typer.Argument(help="The post's id (hammersmith status list).")]) -> None:
    """Mark a post resolved: the page keeps it in the history, no longer as ongoing."""
    settings = config_mod.load(OPTIONS.config)
    with opened(settings) as store:
        post = store.resolve_status(post_id, getpass.getuser())
    if post is None:
        raise HammersmithError(f"no status post {post_id}", hint="list them with: hammersmith status list --all")
    console.print(markup("[green]resolved[/] #{} at site {}: {}", post.id, post.site, post.title))


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Also resolved posts.")] = False,
    site: Annotated[str | None, typer.Option("--site", help="One site (default: every site).")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Status posts, newest first: ongoing ones (with --all, resolved ones too)."""
    settings = config_mod.load(OPTIONS.config)
    name = settings.site(site)[0] if site is not None else None
    with opened(settings) as store:
        posts = store.status_posts(site=name, ongoing_only=not all_, limit=limit)
    if as_json:
        emit_json([p.to_dict() for p in posts])
        return
    if not posts:
        console.print("no ongoing status posts" if not all_ else "no status posts")
        return
    _table(posts)


def _table(posts: list[StatusPostRow]) -> None:
    table = Table(title=markup("{} status post(s)", len(posts), style="table.title"))
    for column in ("id", "site", "impact", "state", "by", "published (UTC)", "resolved (UTC)"):
        table.add_column(column, no_wrap=True)
    table.add_column("title / body", overflow="fold", ratio=1)
    for p in posts:
        text = plain(p.title, "bold")
        if p.body:
            text.append_text(plain(f"\n{p.body}"))
        table.add_row(
            str(p.id),
            plain(p.site),
            plain(p.impact, IMPACT_STYLE[p.impact]),
            plain(p.state, "green" if p.state == "resolved" else "bold"),
            plain(p.published_by),
            f"{p.created_at:%Y-%m-%d %H:%M}",
            f"{p.resolved_at:%Y-%m-%d %H:%M}" if p.resolved_at else "-",
            text,
        )
    console.print(table)
