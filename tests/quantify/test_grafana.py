"""The Grafana dashboard as JSON (pure): Grafana's schema, one Prometheus per panel, every query on a family the
exporter serves, counters rated over Grafana's windows, per site; and `hammersmith rules export` writing it.

Whether each query returns data is test_grafana_live.py's job, against a real Prometheus and agent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from hammersmith.cli.rules import shipped
from hammersmith.quantify import grafana
from tests.conftest import hammersmith

ROOT = Path(__file__).resolve().parents[2]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: PromQL's own words in the dashboard's queries: everything else that looks like a name is a metric
PROMQL_WORDS = {"sum", "count", "max", "rate", "increase", "histogram_quantile", "time", "vector", "or"}
#: the issue's list: per site, fleet states, freshness, API errors and latency, hammers, incidents, Blazar capacity
ROWS = [
    "Site $site",
    "Fleet states",
    "Snapshot freshness",
    "OpenStack API (the agent's own calls)",
    "Hammers",
    "Incidents",
    grafana.BLAZAR_ROW,
]


def documented() -> dict[str, set[str]]:
    """Family -> its labels, from the first and third columns of docs/metrics.md's tables."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \|[^|]*\|([^|]*)\|", text, flags=re.MULTILINE)
    return {name: set(re.findall(r"`([a-z_]+)`", labels)) for name, labels in rows}


def panels() -> list[dict]:
    return [p for p in grafana.build()["panels"] if p["type"] != "row"]


def exprs() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def families(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label values, matchers, ranges and grouping taken out)."""
    text = re.sub(r'"[^"]*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    return {word for word in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", text) if word not in PROMQL_WORDS}


def family_of(name: str, known: dict[str, set[str]]) -> str | None:
    """The documented family a series name belongs to (histograms and summaries add _bucket, _sum, _count)."""
    for candidate in (name, re.sub(r"_(bucket|sum|count)$", "", name)):
        if candidate in known:
            return candidate
    return None


def test_the_dashboard_is_grafana_dashboard_json() -> None:
    board = grafana.build()
    # Grafana's own model (the SDK's, generated from Grafana's schema) reads it back unchanged
    assert json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder)) == board
    assert json.loads(grafana.render()) == board
    assert board["uid"] == grafana.UID and board["title"] == "hammersmith"
    assert isinstance(board["schemaVersion"], int) and board["time"] == {"from": "now-6h", "to": "now"}
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "site"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    site = variables["site"]
    assert site["type"] == "query" and site["datasource"] == DATASOURCE and site["query"] == grafana.SITE_VALUES
    assert site["multi"] and site["includeAll"]

    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    rows = [p for p in board["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == ROWS
    assert rows[0]["repeat"] == "site"  # one overview row per selected site
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        taken = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not taken & cells, f"{panel['title']} overlaps another panel"
        cells |= taken


def test_every_panel_has_the_datasource_targets_a_unit_and_legends() -> None:
    assert len(panels()) >= 25
    for panel in panels():
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], title
        assert panel["description"], title
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids) and all(ref_ids), title
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), title
        if panel["type"] in ("stat", "timeseries"):
            assert panel["fieldConfig"]["defaults"]["unit"], title
        if panel["type"] in ("timeseries", "state-timeline"):  # several series: each named by its labels
            assert all("{{" in t["legendFormat"] for t in panel["targets"]), title


def test_every_query_reads_families_the_exporter_serves() -> None:
    known = documented()
    assert len(known) > 40
    read = {name: family_of(name, known) for expr in exprs() for name in families(expr)}
    assert not [name for name, family in read.items() if family is None], "not in docs/metrics.md"
    # the families: fleet, freshness, API, hammers, incidents, Blazar
    assert {
        "hammersmith_ironic_nodes",
        "hammersmith_snapshot_age_seconds",
        "hammersmith_service_up",
        "hammersmith_api_request_errors_total",
        "hammersmith_api_request_duration_seconds",
        "hammersmith_hammer_actions_total",
        "hammersmith_hammer_time_to_fixed_seconds",
        "hammersmith_incidents_open",
        "hammersmith_blazar_hosts",
        "hammersmith_blazar_leases",
    } <= set(read.values())
    # the site variable reads a family every agent and exporter serves before its first snapshot
    (variable,) = families(grafana.SITE_VALUES.removeprefix("label_values(").removesuffix(", site)"))
    assert variable == "hammersmith_schedule_interval_seconds" and "site" in known[variable]


def test_every_selector_of_a_site_family_is_per_site() -> None:
    known = documented()
    for expr in exprs():
        for name, matchers in re.findall(r"\b([a-z_]+)(\{[^}]*\})?", re.sub(r'"[^"]*"', '""', expr)):
            family = family_of(name, known)
            if family is not None and "site" in known[family]:
                assert 'site=~""' in matchers, f"{name} without site=~$site in {expr}"
    webhook = [e for e in exprs() if "hammersmith_webhook_requests_total" in e]
    assert webhook and "site" not in known["hammersmith_webhook_requests_total"]  # per agent instead


def test_counters_and_histograms_are_rated_over_grafanas_windows() -> None:
    """A counter's raw value means little on a graph: rate() over $__rate_interval, which follows the scrape
    interval. The one exception is the ledger totals table (an instant query of the store's own count)."""
    known = documented()
    rated = 0
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for name in families(expr):
                if not re.search(r"_total$|_bucket$", name):
                    continue
                if panel["type"] == "table" and target["instant"] and name == "hammersmith_hammer_actions_total":
                    continue
                window = rf"rate\({name}(\{{[^}}]*\}})?\[\$__rate_interval\]\)"
                assert re.search(window, expr), f"{name} not rated over $__rate_interval in {expr}"
                assert family_of(name, known)
                rated += 1
    assert rated >= 8
    assert not [e for e in exprs() if re.search(r"\[\d+[smhd]\]", e)], "fixed windows ignore the scrape interval"


def test_docs_list_every_panel_and_query() -> None:
    text = (ROOT / "docs" / "grafana.md").read_text()
    for row in ROWS:
        assert f"### {row}\n" in text, row
    for panel in panels():
        assert f"| {panel['title']} ({panel['type']}) |" in text, panel["title"]
        for target in panel["targets"]:
            assert f"`{target['expr']}`" in text, target["expr"]


def test_rules_export_writes_the_dashboard(tmp_path: Path) -> None:
    base = "https://ops.example.org:9184"
    out = tmp_path / "out"
    result = hammersmith("rules", "export", "--base-url", base, "--out", str(out), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert sorted(Path(p).relative_to(out) for p in answer["files"]) == shipped()  # the rule files, as before
    written = out / grafana.DASHBOARD_FILE
    assert answer["dashboard"] == str(written)
    board = json.loads(written.read_text())
    assert board == grafana.build(base)
    assert [link["url"] for link in board["links"]] == [f"{base}/runbooks"]

    human = hammersmith("rules", "export", "--base-url", base, "--out", "human", cwd=tmp_path)
    assert human.returncode == 0 and "Grafana dashboard" in human.stdout
    assert (tmp_path / "human" / grafana.DASHBOARD_FILE).exists()

    without = hammersmith(
        "rules", "export", "--base-url", base, "--out", "bare", "--no-grafana", "--json", cwd=tmp_path
    )
    assert without.returncode == 0, without.stderr
    assert json.loads(without.stdout)["dashboard"] is None
    assert not (tmp_path / "bare" / grafana.DASHBOARD_FILE).exists()
