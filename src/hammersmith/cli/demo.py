"""`hammersmith demo`: a fresh testbed, the demo faults, what is wrong, then the hammers fixing it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hammersmith import config as config_mod
from hammersmith import cycle
from hammersmith.cli import JsonOpt, console, emit_json, render
from hammersmith.cli.react import opened, render_result
from hammersmith.cli.testbed import bring_up
from hammersmith.config import Settings
from hammersmith.react import hammers as registry
from hammersmith.react.sweep import Sweeper
from hammersmith.testbed import lifecycle

#: provision states the demo waits out between sweeps (Ironic working on what a hammer started)
SWEEPS = 3


def demo_settings(settings: Settings, observe: bool) -> Settings:
    """The testbed's config with every hammer in apply mode (unless --observe) and no grace period.

    The demo breaks 13 of 30 nodes on purpose, so its breaker allows 30 % of the fleet (default
    20 %), and stale-inspection is off (every fresh node would qualify and crowd the report).
    Fake hardware settles in seconds: a node still busy after 20 s (a deploy ramdisk that never calls
    back, now cleaning) is left for a later sweep to verify rather than held for the default 2 minutes.
    """
    site = settings.sites[lifecycle.SITE_NAME]
    modes = {name: ("observe" if observe else "apply") for name in registry.load()}
    modes["stale-inspection"] = "off"
    breaker = site.policy.breaker.model_copy(update={"max_percent": 30})
    policy = site.policy.model_copy(
        update={"hammers": modes, "grace_minutes": 0, "breaker": breaker, "verify_seconds": 20}
    )
    return settings.model_copy(update={"sites": {lifecycle.SITE_NAME: site.model_copy(update={"policy": policy})}})


def demo(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=20, max=2000)] = 30,
    keep: Annotated[bool, typer.Option("--keep/--down", help="Leave the testbed running to explore.")] = True,
    observe: Annotated[bool, typer.Option("--observe", help="Hammers only say what they would do.")] = False,
    neutron: Annotated[bool, typer.Option("--neutron/--no-neutron", help="Run a real Neutron too.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Start the local testbed with injected faults, report what is wrong, and let the hammers fix it."""
    lifecycle.down(Path.cwd())
    state, seconds = bring_up(nodes, None, as_json, frozenset({"neutron"} if neutron else ()))
    sweeps: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        with console.status("injecting the demo faults", spinner="dots"):
            injected = lifecycle.inject(Path.cwd(), scenario="demo")
        inject_seconds = time.perf_counter() - t0
        settings = demo_settings(config_mod.load(Path.cwd() / "hammersmith.yaml"), observe)
        before = cycle.run(settings, lifecycle.SITE_NAME)
        if not as_json:
            console.print(f"testbed up in {seconds:.1f} s, {len(injected)} nodes broken in {inject_seconds:.1f} s")
            render.findings(console, before.report)
        with opened(settings) as store:
            sweeper = Sweeper(settings, lifecycle.SITE_NAME, store, trigger="demo")
            try:
                for _ in range(SWEEPS):
                    result = sweeper.sweep(apply=True)
                    sweeps.append({**result.summary(), "actions": result.actions})
                    if not as_json:
                        render_result(result)
                    if not any(a["outcome"] in ("fixed", "succeeded", "ineffective") for a in result.actions):
                        break  # each sweep waited for its nodes to settle and verified them: nothing left to do
            finally:
                sweeper.close()
        after = cycle.run(settings, lifecycle.SITE_NAME)
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
                "snapshot": before.snapshot.summary(),
                "findings": [f.to_dict() for f in before.report.findings],
                "hands_off": before.report.hands_off,
                "sweeps": sweeps,
                "findings_after": [f.to_dict() for f in after.report.findings],
            }
        )
        return
    console.rule("after the hammers")
    render.findings(console, after.report)
    if keep:
        console.print(
            render.markup(
                "The testbed is still running at {}. Try [bold]hammersmith ledger[/], "
                "[bold]hammersmith check[/], [bold]hammersmith testbed status[/]; "
                "stop it with [bold]hammersmith testbed down[/].",
                state.url,
            )
        )
