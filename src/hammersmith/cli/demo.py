"""`hammersmith demo`: a fresh testbed, the demo faults, one snapshot, and what is wrong with which node."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from hammersmith import config as config_mod
from hammersmith import cycle
from hammersmith.cli import JsonOpt, console, emit_json, render
from hammersmith.cli.testbed import bring_up
from hammersmith.testbed import lifecycle


def demo(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=20, max=2000)] = 30,
    keep: Annotated[bool, typer.Option("--keep/--down", help="Leave the testbed running to explore.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Start the local testbed with injected faults and report what is wrong (read-only)."""
    lifecycle.down(Path.cwd())
    state, seconds = bring_up(nodes, None, as_json)
    try:
        t0 = time.perf_counter()
        with console.status("injecting the demo faults", spinner="dots"):
            injected = lifecycle.inject(Path.cwd(), scenario="demo")
        inject_seconds = time.perf_counter() - t0
        settings = config_mod.load(Path.cwd() / "hammersmith.yaml")
        result = cycle.run(settings, lifecycle.SITE_NAME)
    finally:
        if not keep:
            lifecycle.down(Path.cwd())
    if as_json:
        emit_json(
            {
                "testbed": {
                    "url": state.url,
                    "pid": state.pid,
                    "up_seconds": round(seconds, 2),
                    "inject_seconds": round(inject_seconds, 2),
                    "faults": injected,
                },
                "snapshot": result.snapshot.summary(),
                "findings": [f.to_dict() for f in result.report.findings],
                "hands_off": result.report.hands_off,
            }
        )
        return
    console.print(f"testbed up in {seconds:.1f} s, {len(injected)} nodes broken in {inject_seconds:.1f} s")
    render.snapshot_summary(console, result.snapshot.summary())
    render.findings(console, result.report)
    if keep:
        console.print(
            f"The testbed is still running at {state.url}. Try [bold]hammersmith check[/], "
            "[bold]hammersmith testbed status[/]; stop it with [bold]hammersmith testbed down[/]."
        )
