"""The public status page's posts: `hammersmith status publish|resolve|list`."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True, help="The public status page's posts: `hammersmith status publish|resolve|list`."
)
