"""Dashboard accounts: `hammersmith user add|passwd|remove`."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Dashboard accounts: `hammersmith user add|passwd|remove`.")
