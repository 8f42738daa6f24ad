"""Launch failures per project: Nova servers newly in ERROR and Ironic nodes newly in `deploy failed`.

Counted when a failure *appears* between two snapshots, so a long-dead server is counted once,
not once per cycle; failures already present when the agent starts are the baseline. Projects are named
by ID and by the name Keystone last listed for them ("" where it has none: a noauth site, a failed read).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric

from hammersmith.quantify.collectors import Collector, collector


@collector
class LaunchCollector(Collector):
    name = "launches"

    def collect(self) -> Iterable[Metric]:
        failures = CounterMetricFamily(
            "hammersmith_launch_failures",
            "Launches that failed, per service and project (ID and Keystone name), since the agent started.",
            labels=["site", "service", "project", "project_name"],
        )
        for site, view in self.views():
            for (service, project), count in sorted(view.launch_failures.items()):
                failures.add_metric([site, service, project, view.project_names.get(project, "")], count)
        yield failures
