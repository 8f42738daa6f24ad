"""The Grafana dashboard for the exporter's families, built with Grafana's own `grafana-foundation-sdk`.

Built from code rather than kept as exported JSON so that every query is reviewed PromQL next to the families it
reads (tests tie each name to docs/metrics.md and run each query against a real Prometheus), and so that the
schema is the one Grafana's maintained builders emit, not a hand-edited copy that drifts with Grafana releases.
`hammersmith rules export` writes it beside the alert rules.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

#: the file `hammersmith rules export` writes
DASHBOARD_FILE = "hammersmith-dashboard.json"
#: stable, so a re-import replaces the dashboard instead of adding a copy
UID = "hammersmith-exporter"
#: every panel and variable reads the Prometheus the viewer picks
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: every agent and exporter exports its cycle schedule from its config, before any snapshot has succeeded, so a
#: site that has never been read is still in the list
SITE_VALUES = 'label_values(hammersmith_schedule_interval_seconds{schedule="cycle"}, site)'
SITE = 'site=~"$site"'
#: the one row whose panels need Blazar (the live tests run it on the full tier, the rest on the light one)
BLAZAR_ROW = "Blazar capacity"
#: a row (its panels follow it) or a panel, in the dashboard's order
Item = dashboard.Row | Builder[model.Panel]


def q(expr: str, legend: str = "", instant: bool = False) -> prometheus.Dataquery:
    """One PromQL target; `instant` for tables, which show a value now rather than a series."""
    query = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    return query.instant() if instant else query.range()


def per_minute(counter: str, by: str, matchers: str = SITE) -> str:
    """A counter's rate per minute: hammer actions and cycles are minutes apart, so per second reads as ~0."""
    selector = f"{counter}{{{matchers}}}" if matchers else counter
    return f"60 * sum by ({by}) (rate({selector}[$__rate_interval]))"


def _steps(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def _mapping(texts: dict[str, tuple[str, str]]) -> list[model.ValueMapping]:
    """Value -> (text, colour), for 0/1 gauges that read better as words."""
    return [
        model.ValueMap(
            options={value: model.ValueMappingResult(text=text, color=color) for value, (text, color) in texts.items()}
        )
    ]


def _stat(title: str, description: str, unit: str, *targets: prometheus.Dataquery, w: int = 4) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(4)
        .graph_mode(BigValueGraphMode.AREA)
        .color_mode(BigValueColorMode.VALUE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _series(
    title: str, description: str, unit: str, *targets: prometheus.Dataquery, stacked: bool = False, w: int = 12
) -> timeseries.Panel:
    legend = (
        common.VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(8)
        .legend(legend)
        .fill_opacity(20 if stacked else 0)
        .stacking(common.StackingConfig().mode(StackingMode.NORMAL if stacked else StackingMode.NONE))
        .min(0)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _timeline(title: str, description: str, *targets: prometheus.Dataquery) -> statetimeline.Panel:
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .merge_values(True)
        .show_value(VisibilityMode.AUTO)
        .mappings(_mapping({"0": ("down", "red"), "1": ("up", "green")}))
        .thresholds(_steps((None, "red"), (1, "green")))
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _overview() -> list[Item]:
    """One row per selected site (repeated by Grafana): what an operator reads first."""
    return [
        dashboard.Row("Site $site").repeat("site"),
        _stat("Nodes", "Ironic nodes the latest snapshot read.", "none", q(f"sum(hammersmith_ironic_nodes{{{SITE}}})")),
        _stat(
            "Available",
            "Nodes in `available` and not in maintenance: what users can reserve now.",
            "none",
            q(f'sum(hammersmith_ironic_nodes{{{SITE},provision_state="available",maintenance="false"}})'),
        ).thresholds(_steps((None, "red"), (1, "green"))),
        _stat(
            "In maintenance",
            "Nodes with Ironic's maintenance flag set (an operator's, Ironic's own, or hammersmith's escalation).",
            "none",
            q(f'sum(hammersmith_ironic_nodes{{{SITE},maintenance="true"}}) or vector(0)'),
        ).thresholds(_steps((None, "green"), (1, "orange"))),
        _stat(
            "Snapshot age",
            "Seconds since the latest snapshot finished; it keeps rising while the site cannot be read.",
            "s",
            q(f"max(hammersmith_snapshot_age_seconds{{{SITE}}})"),
        ).thresholds(_steps((None, "green"), (900, "orange"), (1800, "red"))),
        _stat(
            "Open incidents",
            "Incidents opened by Alertmanager deliveries and still firing.",
            "none",
            q(f"sum(hammersmith_incidents_open{{{SITE}}}) or vector(0)"),
        ).thresholds(_steps((None, "green"), (1, "red"))),
        _stat(
            "Breaker",
            "The fleet circuit breaker: open means no hammer applies anything until a human resets it.",
            "none",
            q(f"max(hammersmith_breaker_open{{{SITE}}})"),
        )
        .mappings(_mapping({"0": ("closed", "green"), "1": ("OPEN", "red")}))
        .graph_mode(BigValueGraphMode.NONE),
    ]


def _fleet() -> list[Item]:
    return [
        dashboard.Row("Fleet states"),
        _series(
            "Nodes by provision state",
            "Ironic nodes per provision state, stacked to the fleet size.",
            "none",
            q(f"sum by (site, provision_state) (hammersmith_ironic_nodes{{{SITE}}})", "{{site}} {{provision_state}}"),
            stacked=True,
        ),
        _series(
            "Maintenance and escalations",
            "Nodes in maintenance; of them, those hammersmith handed to a human (reason starting 'hammersmith'); "
            "and nodes whose `last_error` is set.",
            "none",
            q(f'sum by (site) (hammersmith_ironic_nodes{{{SITE},maintenance="true"}})', "{{site}} in maintenance"),
            q(f"sum by (site) (hammersmith_nodes_escalated{{{SITE}}})", "{{site}} escalated to a human"),
            q(f"sum by (site) (hammersmith_ironic_node_last_error{{{SITE}}})", "{{site}} with last_error"),
        ),
        _series(
            "Known errors by check",
            "Findings of the latest snapshot per check (checks with none are left out).",
            "none",
            q(f"sum by (site, check) (hammersmith_findings{{{SITE}}}) > 0", "{{site}} {{check}}"),
            stacked=True,
        ),
        _series(
            "Nodes by resource class",
            "Ironic nodes per resource class (what flavors and Blazar node types select).",
            "none",
            q(f"sum by (site, resource_class) (hammersmith_ironic_nodes{{{SITE}}})", "{{site}} {{resource_class}}"),
            stacked=True,
        ),
    ]


def _freshness() -> list[Item]:
    return [
        dashboard.Row("Snapshot freshness"),
        _series(
            "Snapshot age against the cycle interval",
            "The age rises between cycles and drops at each snapshot; well above the interval means the site "
            "could not be read (HammersmithSnapshotStale fires at three intervals).",
            "s",
            q(f"hammersmith_snapshot_age_seconds{{{SITE}}}", "{{site}} age"),
            q(f'hammersmith_schedule_interval_seconds{{{SITE},schedule="cycle"}}', "{{site}} cycle interval"),
            q(f"time() - hammersmith_sweep_last_success_timestamp_seconds{{{SITE}}}", "{{site}} since last sweep"),
        ),
        _series(
            "Snapshot duration per service",
            "How long the latest snapshot took, and each service's slowest listing.",
            "s",
            q(f"hammersmith_snapshot_duration_seconds{{{SITE}}}", "{{site}} total"),
            q(f"hammersmith_snapshot_service_duration_seconds{{{SITE}}}", "{{site}} {{service}}"),
        ),
        _timeline(
            "Services readable",
            "1 when the last cycle could read the service (keystone: log in), and when every service was read in "
            "full; services the catalog lacks have no row.",
            q(f"hammersmith_service_up{{{SITE}}}", "{{site}} {{service}}"),
            q(f"hammersmith_snapshot_complete{{{SITE}}}", "{{site}} complete"),
        ),
        _series(
            "Cycles by result",
            "Collection cycles per minute, by result (ok, incomplete, failed).",
            "opm",
            q(per_minute("hammersmith_cycles_total", "site, result"), "{{site}} {{result}}"),
            stacked=True,
        ),
    ]


def _api() -> list[Item]:
    rate = "[$__rate_interval]"
    errors = f"sum by (site, service) (rate(hammersmith_api_request_errors_total{{{SITE}}}{rate}))"
    requests = f"sum by (site, service) (rate(hammersmith_api_requests_total{{{SITE}}}{rate}))"
    buckets = f"sum by (site, service, le) (rate(hammersmith_api_request_duration_seconds_bucket{{{SITE}}}{rate}))"
    return [
        dashboard.Row("OpenStack API (the agent's own calls)"),
        _series(
            "Requests by service and status",
            "Every HTTP request the agent made (snapshots, hammers, logins) per second, by HTTP status or "
            "`timeout`/`connection`.",
            "reqps",
            q(
                f"sum by (site, service, code) (rate(hammersmith_api_requests_total{{{SITE}}}{rate}))",
                "{{site}} {{service}} {{code}}",
            ),
            stacked=True,
        ),
        _series(
            "Errors by service",
            "Requests per second that timed out, could not connect or got a 5xx (0 for services without errors).",
            "reqps",
            q(f"{errors} or 0 * {requests}", "{{site}} {{service}}"),
        ),
        _series(
            "Latency by service",
            "Median and 95th percentile of the agent's request latency, per service.",
            "s",
            q(f"histogram_quantile(0.5, {buckets})", "{{site}} {{service}} p50"),
            q(f"histogram_quantile(0.95, {buckets})", "{{site}} {{service}} p95"),
            w=24,
        ),
    ]


def _hammers() -> list[Item]:
    actions = "hammersmith_hammer_actions_total"
    return [
        dashboard.Row("Hammers"),
        _series(
            "Actions by outcome",
            "Ledger rows per minute by outcome: fixed, ineffective, refused, observed (observe mode), escalated ...",
            "opm",
            q(per_minute(actions, "site, outcome"), "{{site}} {{outcome}}"),
            stacked=True,
        ),
        _series(
            "Actions by hammer",
            "Ledger rows per minute by hammer, all outcomes.",
            "opm",
            q(per_minute(actions, "site, hammer"), "{{site}} {{hammer}}"),
            stacked=True,
        ),
        table.Panel()
        .title("Ledger totals")
        .description(
            "Ledger rows per hammer and outcome, the store's own count (within `retention.ledger_days`), as "
            "`hammersmith ledger` lists them."
        )
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .show_header(True)
        .with_target(
            q(f"sum by (site, hammer, outcome) ({actions}{{{SITE}}})", instant=True).format(PromQueryFormat.TABLE)
        ),
        _series(
            "Time to fixed (MTTR)",
            "Mean time from a hammer's action to its verified fix, over the ledger's retention.",
            "s",
            q(
                f"sum by (site, hammer) (hammersmith_hammer_time_to_fixed_seconds_sum{{{SITE}}}) / "
                f"sum by (site, hammer) (hammersmith_hammer_time_to_fixed_seconds_count{{{SITE}}})",
                "{{site}} {{hammer}}",
            ),
        ),
        _series(
            "Breaker, pauses, budget exhaustions",
            "The breaker (1 open), hammers paused by a human, and nodes handed to a human per minute because a "
            "hammer used up its attempt budget.",
            "none",
            q(f"hammersmith_breaker_open{{{SITE}}}", "{{site}} breaker open"),
            q(
                f"count by (site) (hammersmith_hammer_paused{{{SITE}}}) or 0 * hammersmith_breaker_open{{{SITE}}}",
                "{{site}} hammers paused",
            ),
            q(per_minute("hammersmith_hammer_budget_exhaustions_total", "site"), "{{site}} budget exhausted /min"),
            w=24,
        ),
    ]


def _incidents() -> list[Item]:
    return [
        dashboard.Row("Incidents"),
        _series(
            "Open incidents by alert",
            "Incidents still firing, per alert (from Alertmanager's webhook deliveries to the agent).",
            "none",
            q(f"sum by (site, alertname) (hammersmith_incidents_open{{{SITE}}})", "{{site}} {{alertname}}"),
            stacked=True,
        ),
        _series(
            "Webhook deliveries by answer",
            "Alertmanager POSTs per minute by the status the agent answered; a rising 401 or 422 means a "
            "misconfigured receiver. Per agent (the family has no site label).",
            "opm",
            q(per_minute("hammersmith_webhook_requests_total", "instance, code", matchers=""), "{{instance}} {{code}}"),
        ),
    ]


def _blazar() -> list[Item]:
    hosts = "hammersmith_blazar_hosts"
    return [
        dashboard.Row(BLAZAR_ROW),
        _stat(
            "Reservable hosts",
            "Share of Blazar hosts that are reservable.",
            "percentunit",
            q(f'sum by (site) ({hosts}{{{SITE},reservable="true"}}) / sum by (site) ({hosts}{{{SITE}}})', "{{site}}"),
            w=6,
        ).thresholds(_steps((None, "red"), (0.8, "orange"), (0.95, "green"))),
        _series(
            "Hosts by reservable",
            "Hosts enrolled in Blazar, by whether they are reservable.",
            "none",
            q(f"sum by (site, reservable) ({hosts}{{{SITE}}})", "{{site}} reservable={{reservable}}"),
            stacked=True,
            w=9,
        ),
        _series(
            "Reservable hosts by node type",
            "Reservable hosts per `node_type` extra capability (empty: hosts without one).",
            "none",
            q(f'sum by (site, node_type) ({hosts}{{{SITE},reservable="true"}})', "{{site}} {{node_type}}"),
            stacked=True,
            w=9,
        ),
        _series(
            "Leases by status",
            "Blazar leases by status (PENDING, ACTIVE, TERMINATED, ERROR ...).",
            "none",
            q(f"sum by (site, status) (hammersmith_blazar_leases{{{SITE}}})", "{{site}} {{status}}"),
            stacked=True,
        ),
        _series(
            "Maintenance leases by status",
            "Operators' maintenance leases (names matching the site's `policy.maintenance_lease_pattern`).",
            "none",
            q(f"sum by (site, status) (hammersmith_blazar_maintenance_leases{{{SITE}}})", "{{site}} {{status}}"),
            stacked=True,
        ),
    ]


def builder(base_url: str | None = None) -> dashboard.Dashboard:
    """The dashboard's builder; with `base_url` (the agent's), links to the runbooks it serves."""
    board = (
        dashboard.Dashboard("hammersmith")
        .uid(UID)
        .description("The hammersmith exporter's families per site: fleet, freshness, API, hammers, incidents, Blazar.")
        .tags(["hammersmith", "openstack", "ironic", "blazar"])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("site")
            .label("Site")
            .datasource(DATASOURCE)
            .query(SITE_VALUES)
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
        )
    )
    if base_url:
        board = board.link(
            dashboard.DashboardLink("Runbooks")
            .type(model.DashboardLinkType.LINK)
            .url(base_url.rstrip("/") + "/runbooks")
            .icon("doc")
            .target_blank(True)
        )
    for part in (_overview, _fleet, _freshness, _api, _hammers, _incidents, _blazar):
        for item in part():
            board = board.with_row(item) if isinstance(item, dashboard.Row) else board.with_panel(item)
    return board


def build(base_url: str | None = None) -> dict[str, Any]:
    """The dashboard JSON as Grafana imports it: panel ids and query refIds set, which the builders leave out."""
    board = builder(base_url).build()
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
        for index, target in enumerate(getattr(panel, "targets", None) or []):
            target.ref_id = chr(ord("A") + index)
    return json.loads(json.dumps(board, cls=JSONEncoder))


def render(base_url: str | None = None) -> str:
    """The JSON text written to DASHBOARD_FILE."""
    return json.dumps(build(base_url), indent=2, sort_keys=True) + "\n"
