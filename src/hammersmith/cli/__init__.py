"""The `hammersmith` command (Typer + Rich). Every reporting command takes --json."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hammersmith import __version__
from hammersmith import config as config_mod
from hammersmith.cli.render import markup
from hammersmith.errors import ConfigError, HammersmithError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Operations autopilot for OpenStack bare-metal testbeds.",
)
# no highlighting or emoji codes: a node named like a URL or holding `:warning:` prints as it is
console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


class _Options:
    debug = False
    config: Path | None = None


OPTIONS = _Options()

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SiteOpt = Annotated[str | None, typer.Option("--site", help="Site name from the config (default: the only one).")]


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (else $HAMMERSMITH_CONFIG, else ./hammersmith.yaml)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    OPTIONS.debug = debug
    OPTIONS.config = config


@app.command()
def version(as_json: JsonOpt = False) -> None:
    """Print the version."""
    emit_json({"version": __version__}) if as_json else console.print(f"hammersmith {__version__}")


config_app = typer.Typer(no_args_is_help=True, help="Site configuration.")
app.add_typer(config_app, name="config")


@config_app.command("validate")
def config_validate(as_json: JsonOpt = False) -> None:
    """Validate the config file and that each site's cloud exists in clouds.yaml."""
    from hammersmith.cloud.connection import cloud_problems

    path = config_mod.config_path(OPTIONS.config)
    settings = config_mod.load(path)
    problems = cloud_problems(settings, path)
    if problems:
        raise ConfigError(problems)
    if settings.http.web_config_file is not None:
        from hammersmith.web import webconfig

        webconfig.load(settings.http.web_config_file)  # certificates and keys are read as at start
    if as_json:
        emit_json({"file": str(path), "valid": True, "sites": sorted(settings.sites)})
    else:
        console.print(
            markup("[green]{}: valid[/] ({} site(s): {})", path, len(settings.sites), ", ".join(sorted(settings.sites)))
        )


@app.command()
def snapshot(site: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """Read a site once (paginated bulk lists), record it, and summarise it."""
    from hammersmith.cli import render
    from hammersmith.cycle import take_snapshot

    settings = config_mod.load(OPTIONS.config)
    snap = take_snapshot(settings, settings.site(site)[0])
    summary = snap.summary()
    emit_json(summary) if as_json else render.snapshot_summary(console, summary)
    if snap.incomplete:
        raise IncompleteSnapshot(snap)


@app.command()
def check(site: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """Snapshot a site and report what is wrong with which node (read-only)."""
    from hammersmith import cycle
    from hammersmith.cli import render

    settings = config_mod.load(OPTIONS.config)
    result = cycle.run(settings, settings.site(site)[0])
    snap, report = result.snapshot, result.report
    if as_json:
        emit_json(
            {
                "snapshot": snap.summary(),
                "findings": [f.to_dict() for f in report.findings],
                "hands_off": report.hands_off,
                "not_evaluated": report.skipped,
            }
        )
    else:
        render.findings(console, report)
    if snap.incomplete:
        raise IncompleteSnapshot(snap)


class IncompleteSnapshot(HammersmithError):
    exit_code = 3

    def __init__(self, snap: Any) -> None:
        errors = "; ".join(f"{s}: {snap.services[s].error}" for s in snap.incomplete)
        super().__init__(
            f"snapshot of site {snap.site!r} is incomplete: {errors}",
            hint="check that the service is up and reachable from here; "
            "nothing acts on a service whose data is incomplete",
        )


def _register_subcommands() -> None:
    from hammersmith.cli import demo, quantify, react, rules, testbed
    from hammersmith.cli import detect as cli_detect
    from hammersmith.cli import incidents as cli_incidents
    from hammersmith.cli import lint as cli_lint
    from hammersmith.cli import maint as cli_maint
    from hammersmith.cli import notices as cli_notices
    from hammersmith.cli import pause as cli_pause
    from hammersmith.cli import runbooks as cli_runbooks
    from hammersmith.cli import status as cli_status
    from hammersmith.cli import toil as cli_toil
    from hammersmith.cli import users as cli_users
    from hammersmith.cli import windows as cli_windows

    app.add_typer(testbed.app, name="testbed")
    app.command("demo")(demo.demo)
    app.command("sweep")(react.sweep)
    app.command("run")(react.run)
    app.command("exporter")(quantify.exporter)
    app.command("ledger")(react.ledger)
    app.add_typer(react.breaker_app, name="breaker")
    app.command("probe")(cli_detect.probe)
    app.add_typer(cli_detect.smoke_app, name="smoke")
    app.add_typer(rules.app, name="rules")
    app.add_typer(cli_incidents.app, name="incidents")
    app.add_typer(cli_runbooks.app, name="runbook")
    app.command("lint")(cli_lint.lint)
    app.command("notices")(cli_notices.notices)
    app.command("windows")(cli_windows.windows)
    app.add_typer(cli_maint.app, name="maint")
    app.command("pause")(cli_pause.pause)
    app.command("resume")(cli_pause.resume)
    app.add_typer(cli_users.app, name="user")
    app.add_typer(cli_status.app, name="status")
    app.command("toil")(cli_toil.toil)


_register_subcommands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: operator-fixable errors print one clear message (traceback only with --debug)."""
    try:
        app(args=argv)  # usage errors are Typer's own: it prints them and exits 2
    except HammersmithError as exc:
        if OPTIONS.debug:
            traceback.print_exc()
        err_console.print(markup("[bold red]error:[/] {}", exc))  # config values, server text: data
        if exc.hint:
            err_console.print(markup("[yellow]hint:[/] {}", exc.hint))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if OPTIONS.debug:
            raise
        err_console.print(markup("[bold red]internal error:[/] {}: {}", type(exc).__name__, exc))
        err_console.print("[yellow]hint:[/] run again with --debug for the traceback, and report it")
        sys.exit(70)
