"""`hammersmith rules export`: the shipped alert rules, with links that reach this site's agent, and the
Grafana dashboard for the exporter's families.

The rule files ship with `runbook_url`s (and the Alertmanager example with a webhook URL) on the
default agent address, so they pass promtool as they are; an operator loads the exported copy,
whose every link points at `http.public_url`, where the agent serves the runbooks and the webhook.
The dashboard is generated at export (hammersmith.quantify.grafana), its runbook link on the same base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from hammersmith import config as config_mod
from hammersmith.cli import OPTIONS, JsonOpt, console, emit_json
from hammersmith.cli.render import markup, plain
from hammersmith.errors import ConfigError
from hammersmith.quantify import grafana

#: where the shipped files live (package data; the repository's top-level `rules` links here)
RULES_DIR = Path(__file__).resolve().parents[1] / "detect" / "rules"
#: the base the shipped files are written with: the agent's default http.listen
DEFAULT_BASE = "http://127.0.0.1:9184"

app = typer.Typer(
    no_args_is_help=True, help="Prometheus alert rules, the Alertmanager example and the Grafana dashboard."
)


def shipped() -> list[Path]:
    """The rule files, the Alertmanager example and the promtool tests, relative to RULES_DIR."""
    return sorted(p.relative_to(RULES_DIR) for p in RULES_DIR.rglob("*.yml"))


def rebase(text: str, base_url: str) -> str:
    """`text` with every link on the default agent address moved to `base_url`."""
    return text.replace(DEFAULT_BASE + "/", base_url.rstrip("/") + "/")


def _check_base(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise typer.BadParameter(f"{base_url!r} is not an http(s) URL like https://ops.example.org:9184")
    return base_url.rstrip("/")


def _configured_base() -> str:
    """http.public_url (else http://<listen>) of the config; exporting needs no site reachable."""
    try:
        return config_mod.load(OPTIONS.config).http.base_url
    except ConfigError as exc:
        exc.hint = "or pass --base-url with the URL Prometheus and people reach the agent at"
        raise


def export(
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="Base of runbook and webhook URLs (default: the config's http.public_url)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory to write into (created if missing).")] = Path(
        "hammersmith-rules"
    ),
    with_grafana: Annotated[
        bool,
        typer.Option("--grafana/--no-grafana", help=f"Also write the Grafana dashboard ({grafana.DASHBOARD_FILE})."),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Write the alert rules, their promtool tests, the Alertmanager example and the Grafana dashboard, linked to
    your agent."""
    base = _check_base(base_url or _configured_base())
    if RULES_DIR in (out.resolve(), *out.resolve().parents):
        raise typer.BadParameter("--out is inside the shipped rules directory; pick another", param_hint="--out")
    written = []
    for relative in shipped():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rebase((RULES_DIR / relative).read_text(), base))
        written.append(str(target))
    board = None
    if with_grafana:  # apart from `files`: those are the shipped rule files, each rebased
        board = out / grafana.DASHBOARD_FILE
        board.write_text(grafana.render(base))
    if as_json:
        emit_json({"base_url": base, "files": written, "dashboard": str(board) if board else None})
        return
    for path in written:
        console.print(plain(path))
    console.print(
        markup(
            "[green]{} files[/] with links to {}; check them with "
            "`promtool check rules {}/*.rules.yml` and `promtool test rules {}/tests/*.yml`",
            len(written),
            base,
            out,
            out,
        )
    )
    if board is not None:
        console.print(markup("[green]Grafana dashboard[/] {}: import it, then pick your Prometheus", board))


app.command("export")(export)
