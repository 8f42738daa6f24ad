"""Rich rendering of reports; JSON output bypasses all of this."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from hammersmith.detect.checks import Report

STATUS_STYLE = {"ok": "green", "incomplete": "bold red", "absent": "dim"}


def snapshot_summary(console: Console, summary: dict[str, Any]) -> None:
    services = Table(title=f"Snapshot of site '{summary['site']}' in {summary['duration_seconds']:.2f} s")
    for column in ("service", "status", "requests", "seconds", "error"):
        services.add_column(column, justify="right" if column in ("requests", "seconds") else "left")
    for name, read in summary["services"].items():
        style = STATUS_STYLE[read["status"]]
        services.add_row(
            name,
            f"[{style}]{read['status']}[/]",
            str(summary["requests"].get(name, 0)),
            f"{read['seconds']:.2f}",
            read["error"] or "",
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
            table.add_row(str(value), str(count))
        console.print(table)
    if not summary["complete"]:
        console.print("[bold red]Incomplete snapshot:[/] nothing will act on the services marked incomplete.")


def findings(console: Console, report: Report) -> None:
    actionable = [f for f in report.findings if not f.hands_off]
    table = Table(title=f"What is wrong: {len(actionable)} finding(s) a hammer may address")
    for column in ("node", "check", "summary", "detail"):
        table.add_column(column, overflow="fold")
    for f in actionable:
        table.add_row(f.node_name, f"[bold]{f.check}[/]", f.summary, f.detail[:160])
    console.print(table)
    left = Table(title=f"Left alone: {len(report.hands_off)} node(s) a human or a user owns")
    for column in ("node", "why", "known error on it"):
        left.add_column(column, overflow="fold")
    errors_on: dict[str, list[str]] = {}
    for f in report.findings:
        if f.hands_off:
            errors_on.setdefault(f.node_name, []).append(f.check)
    for node, reason in sorted(report.hands_off.items()):
        left.add_row(node, reason, ", ".join(errors_on.get(node, [])))
    console.print(left)
    for name, why in report.skipped.items():
        console.print(f"[yellow]check {name} not evaluated:[/] {why}")
