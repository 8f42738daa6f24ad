"""Rich rendering of reports; JSON output bypasses all of this.

What the CLI shows mixes styled literals with data it does not control: node fields and errors from
Ironic, alert names and labels, runbook text, config values, exception messages. Data goes through
`plain` or `markup`, never into a markup string, so a `[/]` in a node's last_error cannot crash a
command and a `[link=...]` in a maintenance reason cannot style or link the operator's terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from hammersmith.detect.checks import Report

STATUS_STYLE = {"ok": "green", "incomplete": "bold red", "absent": "dim"}


def plain(value: object, style: str = "") -> Text:
    """`value` as it is (no markup, no emoji codes), in `style`: a table cell or a message part that is data."""
    return Text(str(value), style=style)


def markup(template: str, *values: object, style: str = "") -> Text:
    """The Rich markup `template` with each `{}` filled by the next of `values` as plain text (a `Text` as it is).

    A value takes the style around its `{}` (`"[red]{}[/]"` shows it red), and only the template is
    parsed, so the values need no escaping (Rich's `escape` gets a trailing backslash wrong). `style` is
    the base style of it all: a table title passes "table.title", which Rich applies to str titles only.
    """
    parsed = Text.from_markup(template)
    pieces = parsed.plain.split("{}")
    if len(pieces) != len(values) + 1:
        raise ValueError(f"{template!r} has {len(pieces) - 1} placeholder(s) for {len(values)} value(s)")
    text = Text(style=style)
    start = 0
    for piece, value in zip(pieces, values, strict=False):
        end = start + len(piece)
        text.append_text(parsed[start:end])
        if isinstance(value, Text):
            text.append_text(value)
        else:
            filled = plain(value)
            for span in parsed.spans:
                if span.start <= end and end + 2 <= span.end:
                    filled.stylize(span.style)
            text.append_text(filled)
        start = end + 2
    text.append_text(parsed[start:])
    return text


def snapshot_summary(console: Console, summary: dict[str, Any]) -> None:
    services = Table(
        title=markup(
            "Snapshot of site '{}' in {} s", summary["site"], f"{summary['duration_seconds']:.2f}", style="table.title"
        )
    )
    for column in ("service", "status", "requests", "seconds", "error"):
        services.add_column(column, justify="right" if column in ("requests", "seconds") else "left")
    for name, read in summary["services"].items():
        style = STATUS_STYLE[read["status"]]
        services.add_row(
            plain(name),
            plain(read["status"], style),
            str(summary["requests"].get(name, 0)),
            f"{read['seconds']:.2f}",
            plain(read["error"] or ""),
        )
    console.print(services)
    nodes = summary["nodes"]
    for key, title in (
        ("provision_state", "provision state"),
        ("maintenance", "maintenance"),
        ("resource_class", "resource class"),
    ):
        table = Table(title=f"{nodes['total']} nodes by {title}")
        table.add_column(title)
        table.add_column("nodes", justify="right")
        for value, count in nodes[key].items():
            table.add_row(plain(value), str(count))
        console.print(table)
    if not summary["complete"]:
        console.print("[bold red]Incomplete snapshot:[/] nothing will act on the services marked incomplete.")


def findings(console: Console, report: Report) -> None:
    actionable = [f for f in report.findings if not f.hands_off]
    table = Table(title=f"What is wrong: {len(actionable)} finding(s) a hammer may address")
    for column in ("node", "check", "summary", "detail"):
        table.add_column(column, overflow="fold")
    for f in actionable:
        table.add_row(plain(f.node_name), plain(f.check, "bold"), plain(f.summary), plain(f.detail[:160]))
    console.print(table)
    left = Table(title=f"Left alone: {len(report.hands_off)} node(s) a human or a user owns")
    for column in ("node", "why", "known error on it"):
        left.add_column(column, overflow="fold")
    errors_on: dict[str, list[str]] = {}
    for f in report.findings:
        if f.hands_off:
            errors_on.setdefault(f.node_name, []).append(f.check)
    for node, reason in sorted(report.hands_off.items()):
        left.add_row(plain(node), plain(reason), plain(", ".join(errors_on.get(node, []))))
    console.print(left)
    for name, why in report.skipped.items():
        console.print(markup("[yellow]check {} not evaluated:[/] {}", name, why))
