"""The autopilot itself: findings per check, ledger outcomes per hammer, escalations, breaker, last sweep."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

from hammersmith.detect import checks
from hammersmith.detect.handsoff import OWN_REASON_PREFIX
from hammersmith.quantify.collectors import Collector, collector
from hammersmith.react import hammers, notify


@collector
class HammersCollector(Collector):
    name = "hammers"

    def collect(self) -> Iterable[Metric]:
        findings = GaugeMetricFamily(
            "hammersmith_findings", "Known errors found by the latest snapshot, per check.", labels=["site", "check"]
        )
        actions = CounterMetricFamily(
            "hammersmith_hammer_actions",
            "Ledger entries per hammer and outcome (fixed, ineffective, unverified, succeeded, failed, refused, "
            "observed, escalated, reconciled).",
            labels=["site", "hammer", "outcome"],
        )
        fixed = SummaryMetricFamily(
            "hammersmith_hammer_time_to_fixed_seconds",
            "From a hammer's action to the verified fix (outcome fixed): _sum / _count is its MTTR.",
            labels=["site", "hammer"],
        )
        exhausted = CounterMetricFamily(
            "hammersmith_hammer_budget_exhaustions",
            "Times a hammer used up a node's attempt budget and escalated it to a human.",
            labels=["site", "hammer"],
        )
        escalated = GaugeMetricFamily(
            "hammersmith_nodes_escalated",
            "Nodes hammersmith put in maintenance for a human (maintenance reason starts with 'hammersmith').",
            labels=["site"],
        )
        breaker = GaugeMetricFamily(
            "hammersmith_breaker_open",
            "1 while the site's circuit breaker is open: nothing is applied.",
            labels=["site"],
        )
        last_sweep = GaugeMetricFamily(
            "hammersmith_sweep_last_success_timestamp_seconds",
            "When the site's last successful sweep finished (Unix time).",
            labels=["site"],
        )
        paused = GaugeMetricFamily(
            "hammersmith_hammer_paused",
            '1 per hammer a human paused at the site (hammer="*": every hammer): it detects but does not act.',
            labels=["site", "hammer"],
        )
        maintenance_until = GaugeMetricFamily(
            "hammersmith_maintenance_until_timestamp_seconds",
            "When a node's open maintenance is meant to end (Unix time); past it, the maintenance is overdue.",
            labels=["site", "node", "id", "kind"],
        )
        notify_failures = CounterMetricFamily(
            "hammersmith_notification_failures",
            "Notifications that could not be delivered, since the agent started.",
            labels=["site"],
        )
        check_names = sorted({*checks.load(), *checks.cross_service()})
        hammer_names = sorted(hammers.load())
        for site, view in self.views():
            per_check = Counter({name: 0 for name in check_names})
            per_check.update(f.check for f in view.findings)
            for name, count in sorted(per_check.items()):
                findings.add_metric([site, name], count)
            for (hammer, outcome), count in sorted(view.ledger.actions.items()):
                actions.add_metric([site, hammer, outcome], count)
            for hammer, (count, seconds) in sorted(view.ledger.mttr.items()):
                fixed.add_metric([site, hammer], count, seconds)
            for hammer in hammer_names:
                exhausted.add_metric([site, hammer], view.ledger.actions.get((hammer, "escalated"), 0))
            if view.snapshot is not None and view.snapshot.complete("ironic"):
                own = sum(
                    1 for n in view.snapshot.nodes if (n.get("maintenance_reason") or "").startswith(OWN_REASON_PREFIX)
                )
                escalated.add_metric([site], own)
            breaker.add_metric([site], 1 if view.ledger.breaker_open else 0)
            if view.ledger.last_sweep_ok is not None:
                last_sweep.add_metric([site], view.ledger.last_sweep_ok.timestamp())
            for hammer in view.ledger.paused:
                paused.add_metric([site, hammer], 1)
            for m in view.ledger.maintenances:
                if m.until is not None:
                    maintenance_until.add_metric(
                        [site, m.node_name or m.node_uuid, str(m.id), m.kind], m.until.timestamp()
                    )
            notify_failures.add_metric([site], notify.FAILURES.get(site, 0))
        yield from (findings, actions, fixed, exhausted, escalated, breaker, last_sweep, notify_failures)
        yield from (paused, maintenance_until)
