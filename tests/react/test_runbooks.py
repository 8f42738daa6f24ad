"""The runbook catalogue: parsing, safe names, lint on temporary catalogues, and the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from hammersmith.cli.lint import alerts, find_problems
from hammersmith.react import runbooks
from hammersmith.react.hammers import load
from hammersmith.react.runbooks import RunbookError
from tests.conftest import hammersmith

REPO = Path(__file__).resolve().parents[2]


def _runbook(name: str, alerts: str = "[]", hammers: str = "[]", body: str = "", **meta: str) -> str:
    front = {"title": f"{name} in one line", "alerts": alerts, "hammers": hammers, "severity": "warning"}
    front |= {"manual_minutes": "10"} | meta
    lines = "".join(f"{k}: {v}\n" for k, v in front.items() if v != "-")
    return f"---\n{lines}---\n# {name}\n\n## Summary\n\n{body}\n"


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


RULES = """\
groups:
  - name: ironic
    rules:
      - alert: NodeBroken
        expr: up == 0
        annotations:
          runbook_url: http://agent/runbooks/NodeBroken
      - alert: NodeSlow
        expr: up == 0
"""


class FakeHammer:
    """Stands in for a registered hammer: lint only needs its name and where it is defined."""


@pytest.fixture
def clean(tmp_path: Path) -> tuple[Path, Path, dict[str, FakeHammer]]:
    books, rules = tmp_path / "runbooks", tmp_path / "rules"
    _write(rules, "ironic.yml", RULES)
    _write(rules / "tests", "ignored.yml", "tests:\n  - alert: NotARule\n")
    _write(books, "NodeBroken.md", _runbook("NodeBroken", "[NodeBroken]", "[fixer]", "See [slow](NodeSlow.md)."))
    _write(books, "NodeSlow.md", _runbook("NodeSlow", "[NodeSlow]", body="Back to [broken](NodeBroken.md#summary)."))
    _write(books, "fixer.md", _runbook("fixer", hammers="[fixer]"))
    return books, rules, {"fixer": FakeHammer()}


def _messages(books: Path, rules: Path, hammers: dict[str, FakeHammer]) -> list[str]:
    problems, _ = find_problems(books, rules, hammers)
    return [f"{Path(p.file).name}:{p.line}: {p.message}" for p in problems]


def test_the_shipped_catalogue_parses_with_every_hammer_and_my_alerts() -> None:
    catalogue = runbooks.catalogue()
    assert set(load()) <= set(catalogue)
    for name in ("IronicNodeError", "IronicNodeDeployFailed", "IronicNodeCleanFailed", "IronicNodeStuckTransient",
                 "IronicNodeConsoleDisabled", "IronicMaintenanceWithoutReason", "IronicNodesAvailableLow",
                 "NeutronPortBindingFailed", "LaunchFailures", "BlazarLeaseError", "BlazarHostsNotReservable",
                 "OpenStackServiceDown", "OpenStackApiErrors", "OpenStackApiSlow"):  # fmt: skip
        book = catalogue[name]
        assert book.alerts == (name,) and book.severity in ("critical", "warning") and book.manual_minutes > 0
        for heading in ("## Summary", "## Consequences", "## Possible causes", "**Diagnosis.**", "**Mitigation.**"):
            assert heading in book.body, f"{name} lacks {heading}"
    error = catalogue["IronicNodeError"]
    assert error.hammers == ("error-resetter",) and error.severity == "critical"
    assert "error-resetter" in error.links and "hammersmith ledger --node NODE" in error.body
    assert catalogue["error-resetter"].hammers == ("error-resetter",) and catalogue["error-resetter"].alerts == ()


def test_parsing_front_matter_and_links(clean: tuple[Path, Path, dict[str, FakeHammer]]) -> None:
    books, _, _ = clean
    broken = runbooks.catalogue(books)["NodeBroken"]
    assert broken.title == "NodeBroken in one line" and broken.alerts == ("NodeBroken",)
    assert broken.hammers == ("fixer",) and broken.manual_minutes == 10 and broken.links == ("NodeSlow",)
    assert broken.body.startswith("# NodeBroken\n") and "---" not in broken.body
    assert runbooks.catalogue(books)["NodeSlow"].links == ("NodeBroken",)


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "..", ".hidden", "a/b", "a\\b", "a\x00b", "", "x.md", "%2e%2e", "name with space"]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(RunbookError, match="not a runbook name") as exc:
        runbooks.get(name)
    assert "hammersmith runbook list" in exc.value.hint


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(RunbookError, match="no runbook named 'NoSuchAlert'"):
        runbooks.get("NoSuchAlert")


def test_render_html_rewrites_relative_links_and_escapes_html(tmp_path: Path) -> None:
    body = "See [other](Other.md), [part](Other.md#diagnosis), [web](https://example.org/x.md).\n\n<script>x</script>"
    _write(tmp_path, "Page.md", _runbook("Page", body=body))
    _write(tmp_path, "Other.md", _runbook("Other"))
    html = runbooks.render_html(runbooks.get("Page", tmp_path))
    assert 'href="/runbooks/Other"' in html and 'href="/runbooks/Other#diagnosis"' in html
    assert 'href="https://example.org/x.md"' in html and "<script>" not in html
    assert html.startswith("<!doctype html>") and "Page in one line" in html and "stylesheet" not in html


def test_lint_is_clean_on_a_consistent_catalogue(clean: tuple[Path, Path, dict[str, FakeHammer]]) -> None:
    assert _messages(*clean) == []
    assert [a.name for a in alerts(clean[1])[0]] == ["NodeBroken", "NodeSlow"]  # tests/ is not rules


def test_lint_alert_without_runbook(clean: tuple[Path, Path, dict[str, FakeHammer]]) -> None:
    books, rules, hammers = clean
    (books / "NodeSlow.md").unlink()
    found = _messages(books, rules, hammers)
    assert "ironic.yml:8: alert NodeSlow has no runbook NodeSlow.md" in found
    assert "NodeBroken.md:12: link to NodeSlow.md: no such runbook" in found


def test_lint_hammer_without_runbook(clean: tuple[Path, Path, dict[str, FakeHammer]]) -> None:
    books, rules, hammers = clean
    found = _messages(books, rules, hammers | {"new-hammer": FakeHammer()})
    assert any(
        m.startswith("test_runbooks.py:") and "hammer new-hammer has no runbook new-hammer.md" in m for m in found
    )


def test_lint_unreferenced_runbook(clean: tuple[Path, Path, dict[str, FakeHammer]]) -> None:
    books, rules, hammers = clean
    _write(books, "Orphan.md", _runbook("Orphan"))
    assert _messages(books, rules, hammers) == ["Orphan.md:1: no alert, hammer or other runbook refers to this runbook"]


def test_lint_dead_and_non_runbook_links(clean: tuple[Path, Path, dict[str, FakeHammer]]) -> None:
    books, rules, hammers = clean
    _write(books, "NodeSlow.md", _runbook("NodeSlow", "[NodeSlow]", body="[a](Gone.md)\n\n[b](notes.txt) [c](/abs)"))
    found = _messages(books, rules, hammers)
    assert "NodeSlow.md:12: link to Gone.md: no such runbook" in found
    assert "NodeSlow.md:14: relative link 'notes.txt' is not a runbook (Name.md)" in found
    assert len(found) == 2


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"severity": "page"}, "NodeSlow.md:5: severity 'page' is not one of critical, warning"),
        ({"title": "-"}, "NodeSlow.md:1: front matter lacks 'title'"),
        ({"manual_minutes": "soon"}, "NodeSlow.md:6: manual_minutes 'soon' is not a whole number of minutes"),
        ({"alerts": "NodeSlow"}, "NodeSlow.md:3: alerts must be a list of names"),
        ({"alerts": "[NodeSlow, NoSuchAlert]"}, "NodeSlow.md:3: unknown alert NoSuchAlert"),
        ({"hammers": "[no-such-hammer]"}, "NodeSlow.md:4: unknown hammer no-such-hammer"),
        ({"alerts": "[]"}, "NodeSlow.md:3: alerts: does not list NodeSlow"),
        ({"owner": "me"}, "NodeSlow.md:7: unknown front matter key 'owner'"),
    ],
)
def test_lint_front_matter(
    clean: tuple[Path, Path, dict[str, FakeHammer]], meta: dict[str, str], expected: str
) -> None:
    books, rules, hammers = clean
    front = {"alerts": "[NodeSlow]"} | meta
    _write(books, "NodeSlow.md", _runbook("NodeSlow", front.pop("alerts"), front.pop("hammers", "[]"), **front))
    found = _messages(books, rules, hammers)
    assert any(m.startswith(expected) for m in found), found


def test_lint_no_front_matter_and_bad_rule_url(clean: tuple[Path, Path, dict[str, FakeHammer]]) -> None:
    books, rules, hammers = clean
    _write(books, "NodeSlow.md", "# NodeSlow\n\nno front matter\n")
    _write(rules, "ironic.yml", RULES.replace("runbooks/NodeBroken", "runbooks/Other"))
    found = _messages(books, rules, hammers)
    assert any(m.startswith("NodeSlow.md:1: front matter: no front matter") for m in found)
    assert "ironic.yml:4: alert NodeBroken: runbook_url does not end in /runbooks/NodeBroken" in found


def test_lint_cli_lists_problems_as_file_line_message(
    clean: tuple[Path, Path, dict[str, FakeHammer]], tmp_path: Path
) -> None:
    books, rules, _ = clean
    _write(books, "Orphan.md", _runbook("Orphan"))
    run = hammersmith("lint", "--runbooks", str(books), "--rules", str(rules), cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    # the real hammers are registered and have no runbook in this folder; the orphan is unreferenced
    assert "runbooks/Orphan.md:1: no alert, hammer or other runbook refers to this runbook" in lines
    assert any(line.endswith("hammer error-resetter has no runbook error-resetter.md") for line in lines)
    assert "unknown hammer fixer" in run.stdout and lines[-1].endswith("problem(s)")
    as_json = json.loads(
        hammersmith("lint", "--json", "--runbooks", str(books), "--rules", str(rules), cwd=tmp_path).stdout
    )
    assert as_json["ok"] is False and as_json["runbooks"] == 4 and as_json["alerts"] == 2
    assert {
        "file": "runbooks/Orphan.md",
        "line": 1,
        "message": "no alert, hammer or other runbook refers to this runbook",
    } in as_json["problems"]


def test_lint_passes_on_the_repository() -> None:
    run = hammersmith("lint", cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok:" in run.stdout


def test_runbook_list_and_show(tmp_path: Path) -> None:
    listed = hammersmith("runbook", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "IronicNodeError" in listed.stdout and "error-resetter" in listed.stdout and "critical" in listed.stdout
    as_json = json.loads(hammersmith("runbook", "list", "--json", cwd=tmp_path).stdout)
    entry = next(e for e in as_json if e["name"] == "IronicNodeStuckTransient")
    assert entry["hammers"] == ["stuck-transient"] and entry["alerts"] == ["IronicNodeStuckTransient"]
    assert entry["severity"] == "warning" and isinstance(entry["manual_minutes"], int)

    shown = hammersmith("runbook", "show", "IronicNodeError", cwd=tmp_path)
    assert shown.returncode == 0 and "Possible causes" in shown.stdout and "---" not in shown.stdout.splitlines()[0]
    assert "# Summary" not in shown.stdout  # rendered, not raw Markdown
    one = json.loads(hammersmith("runbook", "show", "IronicNodeError", "--json", cwd=tmp_path).stdout)
    assert one["name"] == "IronicNodeError" and one["body"].startswith("# IronicNodeError")


@pytest.mark.parametrize("name", ["NoSuchRunbook", "../../etc/passwd", ".hidden"])
def test_runbook_show_refuses_unknown_and_unsafe(name: str, tmp_path: Path) -> None:
    run = hammersmith("runbook", "show", name, cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == ""
    assert "error:" in run.stderr and "hammersmith runbook list" in run.stderr


def test_hammer_registry_still_finds_runbooks_in_the_package() -> None:
    for name, hammer in load().items():
        assert hammer.runbook == runbooks.RUNBOOKS / f"{name}.md" and hammer.runbook.is_file()


def test_front_matter_split_reports_body_line() -> None:
    text = textwrap.dedent("""\
        ---
        title: t
        ---
        # x
        """)
    meta, body, line = runbooks.split(text)
    assert meta == {"title": "t"} and body == "# x\n" and line == 4
