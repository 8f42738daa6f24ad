"""`hammersmith lint`: every alert and every hammer has a runbook, and the runbooks hold together.

Runs in CI, so a rule without a runbook, a hammer without one, a dead link or a runbook nobody
reaches never ships. Problems are printed as `file:line: message`, like a compiler's.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from hammersmith.cli import JsonOpt, console, emit_json
from hammersmith.cli.render import plain
from hammersmith.react import runbooks
from hammersmith.react.runbooks import Problem

RULES = Path(runbooks.__file__).resolve().parents[2] / "detect" / "rules"


@dataclass(frozen=True)
class Alert:
    name: str
    file: str
    line: int
    runbook_url: str | None


def _mappings(node: yaml.Node) -> list[yaml.MappingNode]:
    """Every mapping in a YAML document, depth first (rule files nest rules in groups)."""
    found: list[yaml.MappingNode] = []
    if isinstance(node, yaml.MappingNode):
        found.append(node)
        for key, value in node.value:
            found += _mappings(key) + _mappings(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _mappings(item)
    return found


def _get(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next((v for k, v in mapping.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def rule_files(directory: Path) -> list[Path]:
    """Every *.yml under the rules folder except its tests/ (promtool unit tests are not rules)."""
    return sorted(p for p in directory.rglob("*.yml") if "tests" not in p.relative_to(directory).parts[:-1])


def alerts(directory: Path) -> tuple[list[Alert], list[Problem]]:
    """Every `alert:` of every rule file, with where it is defined."""
    found: list[Alert] = []
    problems: list[Problem] = []
    for path in rule_files(directory):
        try:
            documents = list(yaml.compose_all(path.read_text()))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problems.append(Problem(str(path), mark.line + 1 if mark else 1, f"not YAML: {exc}"))
            continue
        for doc in documents:
            for mapping in _mappings(doc) if doc is not None else []:
                name = _get(mapping, "alert")
                if not isinstance(name, yaml.ScalarNode):
                    continue
                url = None
                annotations = _get(mapping, "annotations")
                if isinstance(annotations, yaml.MappingNode):
                    node = _get(annotations, "runbook_url")
                    url = node.value if isinstance(node, yaml.ScalarNode) else None
                found.append(Alert(name.value, str(path), name.start_mark.line + 1, url))
    return found, problems


def _hammer_source(hammer: Any) -> tuple[str, int]:
    try:
        lines = inspect.getsourcelines(type(hammer))
        return inspect.getsourcefile(type(hammer)) or "?", lines[1]
    except (OSError, TypeError):
        return type(hammer).__module__, 0


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    return 1


def find_problems(runbook_dir: Path, rules_dir: Path, hammers: dict[str, Any]) -> tuple[list[Problem], dict[str, int]]:
    """Every problem, and what was checked (counts for the summary)."""
    catalogue, problems = runbooks.scan(runbook_dir)
    rules, wrong = alerts(rules_dir)
    problems += wrong
    if not rule_files(rules_dir):
        problems.append(Problem(str(rules_dir), 0, "no alert rule files (*.yml) here"))
    alert_names = {a.name for a in rules}
    present = {p.stem for p in runbook_dir.glob("*.md")}

    for alert in rules:
        if alert.name not in present:
            problems.append(Problem(alert.file, alert.line, f"alert {alert.name} has no runbook {alert.name}.md"))
        if alert.runbook_url is not None and not alert.runbook_url.rstrip("/").endswith(f"/runbooks/{alert.name}"):
            problems.append(
                Problem(
                    alert.file, alert.line, f"alert {alert.name}: runbook_url does not end in /runbooks/{alert.name}"
                )
            )
    for name, hammer in sorted(hammers.items()):
        if name not in present:
            file, line = _hammer_source(hammer)
            problems.append(Problem(file, line, f"hammer {name} has no runbook {name}.md"))

    linked: set[str] = set()
    for path in sorted(runbook_dir.glob("*.md")):
        try:
            _, body, offset = runbooks.split(path.read_text())
        except (ValueError, yaml.YAMLError):
            continue  # already reported by scan
        for href in runbooks.hrefs(body):
            if not runbooks.is_relative(href):
                continue
            target = runbooks.link_target(href)
            line = _line_of(path, f"({href}")
            if target is None:
                problems.append(Problem(str(path), line, f"relative link {href!r} is not a runbook (Name.md)"))
            elif target not in present:
                problems.append(Problem(str(path), line, f"link to {href}: no such runbook"))
            elif target != path.stem:
                linked.add(target)

    for runbook in catalogue.values():
        for alert in runbook.alerts:
            if alert not in alert_names:
                problems.append(Problem(str(runbook.path), _line_of(runbook.path, "alerts:"), f"unknown alert {alert}"))
        for hammer in runbook.hammers:
            if hammer not in hammers:
                problems.append(
                    Problem(str(runbook.path), _line_of(runbook.path, "hammers:"), f"unknown hammer {hammer}")
                )
        if runbook.name in alert_names and runbook.name not in runbook.alerts:
            problems.append(
                Problem(str(runbook.path), _line_of(runbook.path, "alerts:"), f"alerts: does not list {runbook.name}")
            )
        if runbook.name in hammers and runbook.name not in runbook.hammers:
            problems.append(
                Problem(str(runbook.path), _line_of(runbook.path, "hammers:"), f"hammers: does not list {runbook.name}")
            )
    for name in sorted(present - alert_names - set(hammers) - linked):
        problems.append(
            Problem(str(runbook_dir / f"{name}.md"), 1, "no alert, hammer or other runbook refers to this runbook")
        )
    counts = {"runbooks": len(present), "alerts": len(alert_names), "hammers": len(hammers)}
    return problems, counts


def _shown(problem: Problem) -> Problem:
    """Paths relative to the working directory when under it (what an editor or CI log links best)."""
    try:
        return Problem(str(Path(problem.file).resolve().relative_to(Path.cwd())), problem.line, problem.message)
    except ValueError:
        return problem


def lint(
    as_json: JsonOpt = False,
    runbook_dir: Annotated[
        Path, typer.Option("--runbooks", help="Runbook folder (default: the installed catalogue).")
    ] = runbooks.RUNBOOKS,
    rules_dir: Annotated[
        Path, typer.Option("--rules", help="Alert rule folder (default: the installed rules).")
    ] = RULES,
) -> None:
    """Check that every alert and hammer has a runbook and that the runbooks are valid and linked."""
    from hammersmith.react.hammers import load

    problems, counts = find_problems(runbook_dir, rules_dir, load())
    problems = sorted({_shown(p) for p in problems}, key=lambda p: (p.file, p.line, p.message))
    if as_json:
        emit_json({"ok": not problems, **counts, "problems": [asdict(p) for p in problems]})
    else:
        for problem in problems:
            console.print(plain(problem), soft_wrap=True)
        if problems:
            console.print(f"[bold red]{len(problems)} problem(s)[/]")
        else:
            console.print(
                f"[green]ok:[/] {counts['runbooks']} runbooks, every one of {counts['alerts']} alerts "
                f"and {counts['hammers']} hammers has one, every link resolves"
            )
    if problems:
        raise typer.Exit(1)
