"""`hammersmith user add|passwd|remove|list`: the dashboard's accounts, made on the agent's host (no sign-up page).

A password is never an argument (it would sit in the shell history and in `ps`): it is asked twice on a terminal
with nothing echoed, or read as one line from standard input with --password-stdin, for scripts and CI.
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import asdict
from datetime import UTC
from typing import Annotated

import typer
from rich.table import Table

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, console, emit_json
from hammersmith.cli.quantify import opened
from hammersmith.cli.render import markup, plain
from hammersmith.errors import HammersmithError
from hammersmith.store.users import ROLES, UserError, validate_name, validate_password, validate_role

app = typer.Typer(no_args_is_help=True, help="Dashboard accounts: `hammersmith user add|passwd|remove|list`.")

NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="User name: 1-64 of letters, digits and . _ @ -", show_default=False)
]
StdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password as one line from standard input (for scripts).")
]
ROLE_STYLE = {"operator": "bold yellow", "viewer": "cyan"}


def _name(name: str) -> None:
    try:
        validate_name(name)
    except UserError as exc:
        raise typer.BadParameter(f"{exc} ({exc.hint})", param_hint="NAME") from None


def _password(from_stdin: bool) -> str:
    """The new password, checked before anything is written: from stdin, or asked twice on the terminal."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UserError("no password on standard input", hint='pipe one line: echo "$PASSWORD" | hammersmith ...')
    elif not sys.stdin.isatty():
        raise UserError("there is no terminal to ask for the password", hint="pipe it in and pass --password-stdin")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    validate_password(password)
    return password


def _unknown(name: str) -> HammersmithError:
    return UserError(f"no user named {name!r}", hint="`hammersmith user list` shows the accounts")


@app.command("add")
def add(
    name: NameArg,
    role: Annotated[str, typer.Option("--role", help=f"{' or '.join(ROLES)}: a viewer reads, an operator also acts.")],
    password_stdin: StdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a dashboard account (the password is asked, never an argument)."""
    _name(name)
    try:
        validate_role(role)
    except UserError as exc:
        raise typer.BadParameter(f"{exc} ({exc.hint})", param_hint="--role") from None
    settings = config_mod.load(OPTIONS.config)
    with opened(settings) as store:
        if store.user(name) is not None:  # before the prompt: typing a password twice for nothing is rude
            raise UserError(f"a user named {name!r} exists already", hint=f"use `hammersmith user passwd {name}`")
        row = store.add_user(name, _password(password_stdin), role, by=getpass.getuser())
    if as_json:
        emit_json(asdict(row))
        return
    console.print(markup("[green]added[/] {} {}: they can log in to the dashboard now", role, name))


@app.command("passwd")
def passwd(name: NameArg, password_stdin: StdinOpt = False, as_json: JsonOpt = False) -> None:
    """Set a new password; the user is logged out everywhere."""
    _name(name)
    settings = config_mod.load(OPTIONS.config)
    with opened(settings) as store:
        if store.user(name) is None:
            raise _unknown(name)
        if not store.set_password(name, _password(password_stdin), by=getpass.getuser()):
            raise _unknown(name)  # removed while the password was typed
    if as_json:
        emit_json({"name": name, "changed": True})
        return
    console.print(markup("[green]new password[/] for {}; their sessions have ended", name))


@app.command("remove")
def remove(name: NameArg, as_json: JsonOpt = False) -> None:
    """Remove an account; its sessions end at once."""
    _name(name)
    settings = config_mod.load(OPTIONS.config)
    with opened(settings) as store:
        if not store.remove_user(name, by=getpass.getuser()):
            raise _unknown(name)
    if as_json:
        emit_json({"name": name, "removed": True})
        return
    console.print(markup("[green]removed[/] {}", name))


@app.command("list")
def list_users(as_json: JsonOpt = False) -> None:
    """The dashboard's accounts and their roles."""
    settings = config_mod.load(OPTIONS.config)
    with opened(settings) as store:
        rows = store.users()
    if as_json:
        emit_json([asdict(r) for r in rows])
        return
    if not rows:
        console.print("no dashboard accounts yet: hammersmith user add NAME --role operator")
        return
    table = Table(title=markup("{} dashboard account(s)", len(rows), style="table.title"))
    for column in ("name", "role", "created (UTC)", "password set (UTC)"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(
            plain(r.name),
            plain(r.role, ROLE_STYLE.get(r.role, "")),
            r.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            r.updated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
