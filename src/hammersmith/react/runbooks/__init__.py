"""The runbook catalogue: one Markdown file per alert and per hammer, with YAML front matter.

The files ship as package data beside this module, so the agent serves the runbooks of the
version it runs (an alert's `runbook_url` never points at a page newer or older than its rule).
`hammersmith lint` checks that every alert and hammer has one and that they link up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt

from hammersmith.errors import HammersmithError

RUNBOOKS = Path(__file__).parent
SEVERITIES = ("critical", "warning")
REQUIRED = ("title", "alerts", "hammers", "severity", "manual_minutes")
#: a runbook name: what an alert or hammer is called, nothing a path could be made of
SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_FRONT = re.compile(r"\A---[ \t]*\n(?P<yaml>.*?)^---[ \t]*\n", re.S | re.M)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class RunbookError(HammersmithError):
    """A runbook that cannot be found or parsed."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a runbook (or a missing one), pinned to a line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    alerts: tuple[str, ...]
    hammers: tuple[str, ...]
    severity: str
    manual_minutes: int
    body: str
    #: names of the runbooks this one links to (relative `Other.md` links)
    links: tuple[str, ...]
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "alerts": list(self.alerts),
            "hammers": list(self.hammers),
            "severity": self.severity,
            "manual_minutes": self.manual_minutes,
            "links": list(self.links),
            "path": str(self.path),
        }


def _markdown() -> MarkdownIt:
    # raw HTML off: a runbook is text, and the page it becomes must not run anything
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def is_relative(href: str) -> bool:
    """A link into the catalogue rather than to the web, an absolute path or an anchor."""
    return bool(href) and not _SCHEME.match(href) and not href.startswith(("/", "#"))


def link_target(href: str) -> str | None:
    """The runbook name a relative link `Other.md` (or `Other.md#part`) points at, else None."""
    path = href.split("#", 1)[0]
    if not path.endswith(".md"):
        return None
    name = path[: -len(".md")]
    return name if SAFE_NAME.fullmatch(name) else None


def hrefs(body: str) -> list[str]:
    """Every link target in a Markdown body, in order (as markdown-it parses them, not a regex)."""
    found: list[str] = []
    for token in _markdown().parse(body):
        for child in token.children or ():
            if child.type == "link_open":
                found.append(str(child.attrGet("href") or ""))
    return found


def split(text: str) -> tuple[dict[str, Any], str, int]:
    """Front matter (as a mapping), the body, and the file line the body starts on."""
    match = _FRONT.match(text)
    if not match:
        raise ValueError("no front matter: the file must start with '---', YAML keys, '---'")
    meta = yaml.safe_load(match["yaml"]) or {}
    if not isinstance(meta, dict):
        raise ValueError("front matter is not a mapping of keys")
    return meta, text[match.end() :], match["yaml"].count("\n") + 3


def _key_line(text: str, key: str) -> int:
    found = re.search(rf"^{re.escape(key)}\s*:", text, re.M)
    return text.count("\n", 0, found.start()) + 1 if found else 1


def check_file(path: Path) -> tuple[Runbook | None, list[Problem]]:
    """Parse one runbook; every problem of its own form (not of what it refers to) with its line."""
    text = path.read_text()
    problems: list[Problem] = []

    def problem(line: int, message: str) -> None:
        problems.append(Problem(str(path), line, message))

    name = path.stem
    if not SAFE_NAME.fullmatch(name):
        problem(1, f"file name {path.name!r}: a runbook is named <name>.md with only letters, digits, '-' and '_'")
    try:
        meta, body, _ = split(text)
    except (ValueError, yaml.YAMLError) as exc:
        problem(1, f"front matter: {str(exc).splitlines()[0]}")
        return None, problems
    for key in REQUIRED:
        if key not in meta:
            problem(1, f"front matter lacks {key!r} (required: {', '.join(REQUIRED)})")
    for key in sorted(set(meta) - set(REQUIRED)):
        problem(_key_line(text, key), f"unknown front matter key {key!r}")
    title = meta.get("title")
    if "title" in meta and (not isinstance(title, str) or not title.strip()):
        problem(_key_line(text, "title"), "title must be a non-empty line of text")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("alerts", "hammers"):
        value = meta.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and SAFE_NAME.fullmatch(v) for v in value):
            problem(_key_line(text, key), f"{key} must be a list of names, e.g. [Name, ...] ([] for none)")
            value = []
        lists[key] = tuple(value)
    severity = meta.get("severity")
    if "severity" in meta and severity not in SEVERITIES:
        problem(_key_line(text, "severity"), f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    minutes = meta.get("manual_minutes")
    if "manual_minutes" in meta and (not isinstance(minutes, int) or isinstance(minutes, bool) or minutes < 0):
        problem(_key_line(text, "manual_minutes"), f"manual_minutes {minutes!r} is not a whole number of minutes")
    if not re.search(rf"^# {re.escape(name)}[ \t]*$", body, re.M):
        problem(1, f"the body has no '# {name}' heading")
    links = tuple(t for href in hrefs(body) if is_relative(href) and (t := link_target(href)) is not None)
    if problems:
        return None, problems
    runbook = Runbook(
        name=name,
        title=str(title).strip(),
        alerts=lists["alerts"],
        hammers=lists["hammers"],
        severity=str(severity),
        manual_minutes=int(minutes),
        body=body,
        links=tuple(dict.fromkeys(links)),
        path=path,
    )
    return runbook, problems


def scan(directory: Path = RUNBOOKS) -> tuple[dict[str, Runbook], list[Problem]]:
    """Every parsable runbook in a folder, and every problem of form found on the way."""
    found: dict[str, Runbook] = {}
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.md")):
        runbook, wrong = check_file(path)
        problems += wrong
        if runbook is not None:
            found[runbook.name] = runbook
    return found, problems


@lru_cache(maxsize=4)
def catalogue(directory: Path = RUNBOOKS) -> dict[str, Runbook]:
    """Every runbook by name; a malformed one is an error (lint keeps the shipped ones well formed)."""
    found, problems = scan(directory)
    if problems:
        raise RunbookError(
            f"{len(problems)} problem(s) in the runbooks, first: {problems[0]}", hint="run `hammersmith lint`"
        )
    return found


def check_name(name: str) -> str:
    """The name if it is a plain runbook name; refuse anything a path could be built from."""
    if not SAFE_NAME.fullmatch(name or ""):
        raise RunbookError(
            f"{name!r} is not a runbook name (only letters, digits, '-' and '_'; no paths)",
            hint="`hammersmith runbook list` shows every runbook",
        )
    return name


def get(name: str, directory: Path = RUNBOOKS) -> Runbook:
    """One runbook by its plain name; a path, a dot-file or an unknown name is an error."""
    check_name(name)
    runbooks = catalogue(directory)
    if name not in runbooks:
        raise RunbookError(f"no runbook named {name!r}", hint="`hammersmith runbook list` shows every runbook")
    return runbooks[name]


def _rewrite_links(tokens: list[Any]) -> None:
    """`Other.md#part` -> `/runbooks/Other#part`: the agent's URL of the same runbook."""
    for token in tokens:
        for child in token.children or ():
            if child.type != "link_open":
                continue
            href = str(child.attrGet("href") or "")
            target = link_target(href) if is_relative(href) else None
            if target is not None:
                anchor = href.split("#", 1)[1] if "#" in href else ""
                child.attrSet("href", f"/runbooks/{target}" + (f"#{anchor}" if anchor else ""))


def body_html(runbook: Runbook) -> str:
    md = _markdown()
    tokens = md.parse(runbook.body)
    _rewrite_links(tokens)
    return md.renderer.render(tokens, md.options, {})


@lru_cache(maxsize=1)
def _templates() -> Any:
    import jinja2  # only the agent's pages need it, not every CLI start

    return jinja2.Environment(
        loader=jinja2.PackageLoader("hammersmith.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render_html(runbook: Runbook) -> str:
    """The runbook as a standalone HTML page (no external assets)."""
    return _templates().get_template("runbook.html").render(runbook=runbook, content=body_html(runbook))


def render_index(runbooks: dict[str, Runbook]) -> str:
    """The catalogue as one HTML page: every runbook with its alerts, hammers and severity."""
    return _templates().get_template("runbooks_index.html").render(runbooks=sorted(runbooks.values(), key=_order))


def _order(runbook: Runbook) -> tuple[int, str]:
    return (0 if runbook.alerts else 1, runbook.name.lower())
