"""`hammersmith testbed ...`: the local real-Ironic testbed and its fault injection."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hammersmith.cli import JsonOpt, console, emit_json
from hammersmith.cli.render import markup, plain
from hammersmith.testbed import lifecycle
from hammersmith.testbed.faults import FAULTS, SCENARIOS

app = typer.Typer(no_args_is_help=True, help="A local real Ironic (fake hardware) with injectable faults.")


@contextmanager
def progress_steps(quiet: bool) -> Iterator[lifecycle.Step]:
    """A Rich progress display whose steps the testbed code starts one after another."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),  # descriptions hold paths and URLs
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    ) as progress:
        current: list[int] = []

        def step(description: str, total: int | None) -> Callable[[int], None]:
            if current:
                task = progress.tasks[current[-1]]
                progress.update(current[-1], completed=task.total or 1, total=task.total or 1)
            current.append(progress.add_task(description, total=total))
            return lambda done: progress.update(current[-1], completed=done)

        yield step
        if current:
            task = progress.tasks[current[-1]]
            progress.update(current[-1], completed=task.total or 1, total=task.total or 1)


def bring_up(
    nodes: int, port: int | None, quiet: bool, services: frozenset[str] = frozenset()
) -> tuple[lifecycle.State, float]:
    started = time.perf_counter()
    with progress_steps(quiet) as step:
        state = lifecycle.up(Path.cwd(), nodes, port, step, services)
    return state, time.perf_counter() - started


@app.command()
def up(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=2000, help="Nodes to enrol.")] = 30,
    port: Annotated[int | None, typer.Option("--port", help="API port (default 6385, else a free one).")] = None,
    services: Annotated[
        str,
        typer.Option(
            "--with",
            help=f"Also run these real services, comma-separated: {', '.join(lifecycle.SERVICES)}, "
            f"or {lifecycle.FULL} for all of them; each brings those it needs (placement, glance: keystone; nova: "
            "keystone, neutron, mariadb, rabbitmq, placement, glance). "
            "Keystone: authentication and RBAC; Neutron: VIFs, port faults; see docs/testbed.md.",
        ),
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """Install (once), start Ironic, enrol nodes to `available`, write clouds.yaml + hammersmith.yaml here."""
    state, seconds = bring_up(nodes, port, as_json, lifecycle.known_services(services.split(",")))
    if as_json:
        emit_json(
            {
                "url": state.url,
                "pid": state.pid,
                **{name: lifecycle.service_url(state, name) for name in lifecycle.SERVICES},
                "nodes": state.nodes,
                "seconds": round(seconds, 2),
            }
        )
    else:
        extra = "".join(
            f", {service.title} at {lifecycle.service_url(state, name)}"
            for name, service in lifecycle.SERVICES.items()
            if name in state.services
        )
        console.print(
            markup(
                "[green]testbed up[/] at {} (PID {}){} with {} nodes in {} s; clouds.yaml and hammersmith.yaml "
                "written to {}",
                state.url,
                state.pid,
                extra,
                state.nodes,
                f"{seconds:.1f}",
                Path.cwd(),
            )
        )


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Is the testbed running, and what state are its nodes in."""
    result = lifecycle.status(Path.cwd())
    if as_json:
        emit_json(result)
        return
    if not result["running"]:
        console.print(markup("testbed: [red]not running[/] ({})", result["directory"]))
        return
    nodes = f"{result['nodes']} nodes" if "nodes" in result else "nodes unknown while Keystone is stopped"
    console.print(markup("testbed: [green]running[/] at {} (PID {}), {}", result["url"], result["pid"], nodes))
    for name in lifecycle.SERVICES:
        if service := result[name]:
            running = plain("running", "green") if service["running"] else plain("stopped", "red")
            pids = ", ".join(f"{each} {pid}" for each, pid in service.get("processes", {}).items())
            console.print(markup("{}: {} at {} (PID {})", name, running, service["url"], pids or service["pid"]))
    if "provision_states" in result:
        table = Table("provision state", "nodes")
        for state, count in sorted(result["provision_states"].items()):
            table.add_row(plain(state), str(count))
        console.print(table)
    if result["faults"]:
        faults = Table("node", "injected faults")
        for node, names in sorted(result["faults"].items()):
            faults.add_row(plain(node), plain(", ".join(names)))
        console.print(faults)


@app.command()
def down(as_json: JsonOpt = False) -> None:
    """Stop the testbed's Ironic and every service by PID (the data stays until the next `up`)."""
    state = lifecycle.down(Path.cwd())
    emit_json({"stopped": state is not None}) if as_json else console.print(
        "testbed stopped" if state else "no testbed here"
    )


ServiceArg = Annotated[str, typer.Argument(help=f"One of the testbed's services: {', '.join(lifecycle.SERVICES)}.")]


@app.command()
def stop(service: ServiceArg, as_json: JsonOpt = False) -> None:
    """Stop one service by its PID, keeping its data: a real outage, which `testbed start` ends."""
    lifecycle.stop_service(Path.cwd(), service)
    emit_json({"service": service, "running": False}) if as_json else console.print(plain(f"{service} stopped"))


@app.command()
def start(service: ServiceArg, as_json: JsonOpt = False) -> None:
    """Start a stopped service again, on its port and with its data."""
    state = lifecycle.start_service(Path.cwd(), service)
    url, pid = lifecycle.service_url(state, service), state.pid_of(service)
    if as_json:
        emit_json({"service": service, "running": True, "url": url, "pid": pid})
    else:
        console.print(markup("{} [green]running[/] at {} (PID {})", service, url, pid))


@app.command()
def faults(as_json: JsonOpt = False) -> None:
    """List the faults `testbed inject` can produce."""
    if as_json:
        emit_json(
            [{"name": f.name, "summary": f.summary, "hands_off": f.hands_off} for f in FAULTS.values()]
            + [{"scenario": name, "faults": steps} for name, steps in SCENARIOS.items()]
        )
        return
    table = Table("fault", "what it produces", "a tool must")
    for f in FAULTS.values():
        table.add_row(plain(f.name), plain(f.summary), "[yellow]leave it alone[/]" if f.hands_off else "fix it")
    console.print(table)
    console.print(plain("scenarios: " + ", ".join(SCENARIOS)))


@app.command()
def inject(
    fault: Annotated[str | None, typer.Argument(help="Fault name (see `testbed faults`).")] = None,
    node: Annotated[str | None, typer.Option("--node", help="Node name to break.")] = None,
    count: Annotated[int, typer.Option("--count", "-k", min=1, help="Break K healthy nodes.")] = 1,
    combine: Annotated[
        str | None,
        typer.Option("--with", help="Apply this fault first (e.g. operator-maintenance --with error-teardown)."),
    ] = None,
    scenario: Annotated[str | None, typer.Option("--scenario", help="Apply a named mixed set (demo).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Produce a fault on nodes the way it happens in production."""
    if not fault and not scenario:
        raise typer.BadParameter("name a FAULT or pass --scenario")
    with console.status("injecting faults", spinner="dots") if not as_json else _nothing():
        injected = lifecycle.inject(Path.cwd(), fault, node, count, combine, scenario)
    if as_json:
        emit_json(injected)
        return
    table = Table("node", "fault")
    for name, steps in sorted(injected.items()):
        table.add_row(plain(name), plain(" + ".join(steps)))
    console.print(table)


@contextmanager
def _nothing() -> Iterator[None]:
    yield
