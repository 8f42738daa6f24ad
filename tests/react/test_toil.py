"""Worth automating: the ranking's arithmetic on a real store (SQLite, and PostgreSQL for its own SQL), filled through
the store's own methods, its properties, its cost on a year of ledger at 10,000 nodes, and `hammersmith toil`."""

from __future__ import annotations

import itertools
import json
import random
import statistics
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, insert

from hammersmith import config
from hammersmith.react import toil
from hammersmith.react.runbooks import catalogue
from hammersmith.store import Store, open_store
from hammersmith.store.models import Action, Finding, Incident, Sweep
from tests.conftest import Postgres, hammersmith

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KEYS = {
    "name",
    "title",
    "runbook",
    "alerts",
    "hammers",
    "occurrences",
    "per_week",
    "per_month",
    "manual_minutes",
    "hammer_minutes",
    "hand_fixes",
    "hammer_fixes",
    "saved_minutes",
    "budget_5y_minutes",
    "automated",
}
SITES = itertools.count()


@pytest.fixture(scope="session")
def toil_postgres_url(postgres: Postgres) -> str:
    return postgres.create_database("hammersmith_toil")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store on each backend (the day arithmetic is SQL of each dialect's own), emptied first."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hammersmith.sqlite'}"
    else:
        url = request.getfixturevalue("toil_postgres_url")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'hammersmith.sqlite'}")
    try:
        yield opened
    finally:
        opened.close()


# -- filling the store as the agent does ----------------------------------------------------------------------------


def watched(store: Store, site: str, days: float) -> None:
    """The site's first sweep, `days` ago: how long the store has watched it."""
    at = NOW - timedelta(days=days)
    store.record_sweep(site=site, started_at=at, finished_at=at, ok=True, summary={})


def finding(store: Store, site: str, hammer: str, node: str, days_ago: float, hours: float = 1) -> None:
    """One episode: seen first `days_ago`, seen again by later sweeps for `hours`."""
    seen = NOW - timedelta(days=days_ago)
    for at in (seen, seen + timedelta(hours=hours)):
        store.record_finding(site=site, hammer=hammer, node_uuid=node, node_name=node, summary="s", detail="", now=at)


def fix(
    store: Store, site: str, hammer: str, node: str, days_ago: float, minutes: float, outcome: str = "fixed"
) -> int:
    """A hammer's action, verified `minutes` after it started."""
    started = NOW - timedelta(days=days_ago)
    action = store.begin_action(
        site=site, hammer=hammer, node_uuid=node, node_name=node, trigger="sweep", kind="k", params={}, before=None,
        now=started,
    )  # fmt: skip
    store.finish_action(action, outcome=outcome, verified=True, now=started + timedelta(minutes=minutes))
    return action


def incident(store: Store, site: str, alert: str, node: str, days_ago: float, fingerprint: str = "") -> int:
    at = NOW - timedelta(days=days_ago)
    incident_id, opened = store.open_incident(
        site=site, alertname=alert, fingerprint=fingerprint or f"{site}-{alert}-{node}-{days_ago}", starts_at=at,
        status="firing", labels={"alertname": alert, "node": node}, annotations={}, node=node, hammer=None,
        runbook_url=None, detail="received", now=at,
    )  # fmt: skip
    assert opened
    return incident_id


def by_name(errors: list[toil.KnownError]) -> dict[str, toil.KnownError]:
    return {e.name: e for e in errors}


# -- the arithmetic -------------------------------------------------------------------------------------------------


def test_every_figure_from_the_records(store: Store) -> None:
    """IronicNodeCleanFailed (alert IronicNodeCleanFailed, hammer clean-failed, runbook 30 min) with known records:
    findings over the 30 days the store keeps them, incidents over the 90-day window, one incident that is the
    same fault as a finding (its hammer acted on that node then) counted once, hand fixes' median, hammer median."""
    watched(store, "lab", 200)
    for n in range(6):
        finding(store, "lab", "clean-failed", f"node-{n}", days_ago=1 + n * 4)
    finding(store, "lab", "clean-failed", "node-old", days_ago=45)  # older than the findings' 30 days: not counted
    for n, minutes in enumerate((2, 4, 6, 10)):
        fix(store, "lab", "clean-failed", f"node-{n}", days_ago=1 + n * 4, minutes=minutes)
    fix(store, "lab", "clean-failed", "node-5", days_ago=21, minutes=3, outcome="ineffective")
    fix(store, "lab", "clean-failed", "node-x", days_ago=120, minutes=1)  # outside the window
    hand = [incident(store, "lab", "IronicNodeCleanFailed", f"node-h{n}", days_ago=10 + n) for n in range(2)]
    store.resolve_incident_by_hand(hand[0], by="alice", minutes=20, note="reflashed", now=NOW - timedelta(days=9))
    store.resolve_incident_by_hand(hand[1], by="bob", minutes=50, note="replaced the NIC", now=NOW - timedelta(days=9))
    incident(store, "lab", "IronicNodeCleanFailed", "node-h2", days_ago=60)  # still firing
    incident(store, "lab", "IronicNodeCleanFailed", "node-h3", days_ago=100)  # outside the window
    # an alert whose hammer acted on node-0, where clean-failed had a finding then: the same fault, once
    same = incident(store, "lab", "IronicNodeCleanFailed", "node-0", days_ago=1)
    acted = fix(store, "lab", "clean-failed", "node-0", days_ago=1 - 1 / 24, minutes=8)
    store.set_incident_action(same, acted)
    # another site's records stay there
    watched(store, "far", 20)
    finding(store, "far", "clean-failed", "node-far", days_ago=2)

    errors = by_name(toil.rank(store, site="lab", now=NOW))
    alert, hammer = errors["IronicNodeCleanFailed"], errors["clean-failed"]

    per_day = 6 / 30 + 3 / 90  # 6 findings in 30 days; 3 incidents in 90 (the one that was a finding: not again)
    assert alert.occurrences == 9 and hammer.occurrences == 6
    assert alert.per_week == round(per_day * 7, 2) and alert.per_month == round(per_day * 365.25 / 12, 2)
    assert (alert.hand_fixes, alert.manual_minutes) == (2, 35.0)  # median of 20 and 50
    assert (hammer.hand_fixes, hammer.manual_minutes) == (0, 30.0)  # no incidents of its own: the runbook's
    assert alert.hammer_fixes == hammer.hammer_fixes == 5  # fixed, in the window; ineffective is no fix
    assert alert.hammer_minutes == hammer.hammer_minutes == 6.0  # median of 2, 4, 6, 8, 10
    assert alert.saved_minutes == 5 * 35.0 and hammer.saved_minutes == 5 * 30.0
    assert alert.budget_5y_minutes == pytest.approx(per_day * 365.25 * 5 * 35, abs=0.1)
    assert hammer.budget_5y_minutes == pytest.approx(6 / 30 * 365.25 * 5 * 30, abs=0.1)
    assert alert.automated and hammer.automated  # clean-failed is registered, and observe by default
    assert alert.runbook == "/runbooks/IronicNodeCleanFailed" and alert.alerts == ("IronicNodeCleanFailed",)
    assert set(alert.to_dict()) == KEYS and json.loads(json.dumps(alert.to_dict()))["hammers"] == ["clean-failed"]

    # every site: each site's rate over its own period (far: watched 20 days, so 1 finding in 20 days)
    everywhere = by_name(toil.rank(store, now=NOW))["clean-failed"]
    assert everywhere.occurrences == 7
    assert everywhere.per_week == round((6 / 30 + 1 / 20) * 7, 2)


def test_automated_follows_the_policy_and_never_seen_is_worth_nothing(store: Store, tmp_path: Path) -> None:
    watched(store, "lab", 3)
    finding(store, "lab", "clean-failed", "node-1", days_ago=1)
    incident(store, "lab", "ProbeFailing", "-", days_ago=2)
    off = config.load(_config(tmp_path, {"lab": {"clean-failed": "off"}}))
    errors = by_name(toil.rank(store, now=NOW, settings=off))
    assert not errors["IronicNodeCleanFailed"].automated and not errors["clean-failed"].automated
    assert errors["IronicNodeError"].automated  # error-resetter: observe by default
    assert not errors["ProbeFailing"].automated and errors["ProbeFailing"].budget_5y_minutes > 0
    # a store watched for under a week: a week is the shortest period a rate is taken over
    assert errors["clean-failed"].per_week == 1.0
    for e in errors.values():
        if not e.occurrences:
            assert e.per_week == e.per_month == e.budget_5y_minutes == 0
    todo = toil.automate_next(toil.rank(store, now=NOW, settings=off))
    assert {e.name for e in todo} == {"ProbeFailing", "IronicNodeCleanFailed", "clean-failed"}


def test_an_empty_store_ranks_every_runbook_at_zero(store: Store) -> None:
    errors = toil.rank(store, now=NOW)
    assert sorted(e.name for e in errors) == sorted(catalogue())
    assert all(e.budget_5y_minutes == e.saved_minutes == e.occurrences == 0 for e in errors)
    assert [e.name for e in errors] == sorted(e.name for e in errors)  # ties by name


# -- properties ------------------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seen=st.integers(0, 6), more=st.integers(1, 4))
def test_budget_grows_with_frequency(sqlite_store: Store, seen: int, more: int) -> None:
    """Two sites watched alike, one with more findings: a bigger budget; none at all: budget 0."""
    budgets = []
    for count in (seen, seen + more):
        site = f"s{next(SITES)}"
        watched(sqlite_store, site, 60)
        for n in range(count):
            finding(sqlite_store, site, "stuck-transient", f"node-{n}", days_ago=1 + n)
        budgets.append(by_name(toil.rank(sqlite_store, site=site, now=NOW))["stuck-transient"].budget_5y_minutes)
    assert budgets[1] > budgets[0]
    assert (budgets[0] == 0) == (seen == 0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(minutes=st.lists(st.integers(1, 600), min_size=2, max_size=2, unique=True).map(sorted))
def test_budget_grows_with_the_minutes_a_person_spends(sqlite_store: Store, minutes: list[int]) -> None:
    budgets = []
    for spent in minutes:
        site = f"s{next(SITES)}"
        watched(sqlite_store, site, 60)
        closed = incident(sqlite_store, site, "LaunchFailures", "-", days_ago=3)
        sqlite_store.resolve_incident_by_hand(closed, by="op", minutes=spent, note="n", now=NOW - timedelta(days=2))
        error = by_name(toil.rank(sqlite_store, site=site, now=NOW))["LaunchFailures"]
        assert (error.manual_minutes, error.hand_fixes, error.occurrences) == (spent, 1, 1)
        budgets.append(error.budget_5y_minutes)
    assert 0 < budgets[0] < budgets[1]


RECORDS = st.lists(
    st.tuples(
        st.sampled_from(["finding", "incident", "fix"]),
        st.sampled_from(["clean-failed", "error-resetter", "dirty-ports", "stale-inspection"]),
        st.sampled_from(["IronicNodeError", "ProbeFailing", "LaunchFailures", "OpenStackApiSlow"]),
        st.integers(0, 9),
        st.floats(0, 80),
    ),
    max_size=12,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=RECORDS)
def test_the_ranking_is_sorted_and_the_unseen_are_worth_nothing(sqlite_store: Store, records: list[Any]) -> None:
    site = f"s{next(SITES)}"
    watched(sqlite_store, site, 90)
    for n, (kind, hammer, alert, node, days_ago) in enumerate(records):
        if kind == "finding":
            finding(sqlite_store, site, hammer, f"node-{node}", days_ago)
        elif kind == "fix":
            fix(sqlite_store, site, hammer, f"node-{node}", days_ago, minutes=node + 1)
        else:
            incident(sqlite_store, site, alert, f"node-{node}", days_ago, fingerprint=f"{site}-{n}")
    errors = toil.rank(sqlite_store, site=site, now=NOW)
    keys = [(-e.budget_5y_minutes, -e.saved_minutes, e.name) for e in errors]
    assert keys == sorted(keys)
    for e in errors:
        assert (e.budget_5y_minutes > 0) == (e.occurrences > 0)
        assert e.saved_minutes == pytest.approx(e.hammer_fixes * e.manual_minutes, abs=0.1)


@given(values=st.lists(st.integers(0, 50), min_size=1, max_size=40))
def test_the_median_of_a_histogram_is_the_median_of_its_values(values: list[int]) -> None:
    histogram: dict[float, int] = {}
    for value in values:
        histogram[float(value)] = histogram.get(float(value), 0) + 1
    assert toil.median(histogram) == statistics.median(values)


# -- cost: a year of ledger at 10,000 nodes --------------------------------------------------------------------------


def test_a_year_of_ledger_at_10000_nodes_ranks_in_five_aggregate_queries(sqlite_store: Store) -> None:
    """The volumes of bench/webdata.py (300 ledger rows a day, a third fixed; 250 findings a day for the 30 days
    kept; 20 incidents a day, some linked to their action; a sweep a minute): five aggregate queries, whatever the
    size (its time is measured by bench/dashboard.py's /toil page, not asserted here)."""
    rng = random.Random(1205)
    hammers = ["clean-failed", "error-resetter", "stuck-transient", "dirty-ports", "maintenance-doctor"]
    alerts = ["IronicNodeError", "IronicNodeCleanFailed", "ProbeFailing", "OpenStackApiSlow"]

    def ago(days: float) -> datetime:
        return NOW - timedelta(seconds=rng.random() * days * 86400)

    actions = []
    for _ in range(300 * 365):
        started = ago(365)
        outcome = rng.choices(["observed", "fixed", "refused", "ineffective"], [38, 34, 10, 18])[0]
        node = f"{rng.randrange(10_000):05d}"
        actions.append(
            {
                "site": "lab", "hammer": rng.choice(hammers), "node_uuid": node, "node_name": f"node-{node}",
                "trigger": "sweep", "mode": "apply", "kind": "k", "params": {"state": "clean failed"},
                "outcome": outcome, "planned_at": started, "started_at": started,
                "finished_at": started + timedelta(seconds=2),
                "verified_at": started + timedelta(seconds=rng.uniform(60, 1800)) if outcome == "fixed" else None,
            }
        )  # fmt: skip
    findings = []
    for _ in range(250 * 30):
        seen, node = ago(30), f"{rng.randrange(10_000):05d}"
        findings.append(
            {
                "site": "lab", "hammer": rng.choice(hammers), "node_uuid": node, "node_name": f"node-{node}",
                "summary": "s", "detail": "d", "seen_at": seen, "last_seen_at": seen + timedelta(hours=1),
            }
        )  # fmt: skip
    incidents = []
    for n in range(20 * 365):
        at = ago(365)
        incidents.append(
            {
                "site": "lab", "alertname": rng.choice(alerts), "fingerprint": f"fp{n}", "starts_at": at,
                "status": "resolved", "labels": {}, "annotations": {}, "node": f"node-{n % 10_000:05d}",
                "hammer": None, "runbook_url": None, "opened_at": at, "resolved_at": at,
                "action_id": rng.randrange(1, len(actions)) if n % 3 == 0 else None,
                "resolved_by": "op" if n % 10 == 0 else None, "manual_minutes": 30.0 + n % 40 if n % 10 == 0 else None,
            }
        )  # fmt: skip
    sweeps = [
        {"site": "lab", "started_at": NOW - timedelta(minutes=m), "finished_at": NOW, "ok": True, "summary": {}}
        for m in range(0, 365 * 24 * 60, 60)
    ]
    with sqlite_store.engine.begin() as connection:
        for model, rows in ((Action, actions), (Finding, findings), (Incident, incidents), (Sweep, sweeps)):
            connection.execute(insert(model), rows)

    statements: list[str] = []
    event.listen(sqlite_store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    errors = toil.rank(sqlite_store, site="lab", now=NOW)
    assert len(statements) == 5 and all("GROUP BY" in s for s in statements[1:]), statements
    assert by_name(errors)["IronicNodeCleanFailed"].hammer_fixes > 1000


# -- the command line ------------------------------------------------------------------------------------------------


def _config(directory: Path, modes: dict[str, dict[str, str]], store: Path | None = None) -> Path:
    sites = {name: {"cloud": "lab", "policy": {"hammers": hammers}} for name, hammers in modes.items()}
    raw: dict[str, Any] = {"state_dir": str(directory / "state"), "sites": sites}
    if store is not None:
        raw["store_url"] = f"sqlite:///{store}"
    path = directory / "hammersmith.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_command_prints_the_ranking_as_json_and_as_a_table(tmp_path: Path) -> None:
    db = tmp_path / "toil.sqlite"
    path = _config(tmp_path, {"lab": {"stale-inspection": "off"}, "far": {"stale-inspection": "off"}}, store=db)
    filled = open_store(f"sqlite:///{db}")
    try:
        watched(filled, "lab", 90)
        for n in range(4):
            finding(filled, "lab", "stale-inspection", f"node-{n}", days_ago=n + 1)
            fix(filled, "lab", "stale-inspection", f"node-{n}", days_ago=n + 1, minutes=3)
        closed = incident(filled, "lab", "SmokeScenarioFailing", "-", days_ago=5)
        filled.resolve_incident_by_hand(closed, by="op", minutes=90, note="restarted nova", now=NOW)
        watched(filled, "far", 30)
        finding(filled, "far", "dirty-ports", "node-9", days_ago=2)
        expected = [e.to_dict() for e in toil.rank(filled, settings=config.load(path))]
    finally:
        filled.close()

    cli = ("--config", str(path), "toil")
    result = hammersmith(*cli, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert len(listed) == len(catalogue()) and all(set(e) == KEYS for e in listed)
    budgets = [e["budget_5y_minutes"] for e in listed]
    assert budgets == sorted(budgets, reverse=True) and budgets[0] > 0
    # the same figures as the library's, but for the minutes that passed between the two calls
    assert [e["name"] for e in listed] == [e["name"] for e in expected]
    stale = next(e for e in listed if e["name"] == "stale-inspection")
    assert (stale["occurrences"], stale["hammer_fixes"], stale["hammer_minutes"], stale["automated"]) == (
        4,
        4,
        3.0,
        False,
    )
    smoke = next(e for e in listed if e["name"] == "SmokeScenarioFailing")
    assert (smoke["manual_minutes"], smoke["hand_fixes"], smoke["automated"]) == (90.0, 1, False)

    one = json.loads(hammersmith(*cli, "--site", "far", "--json", cwd=tmp_path).stdout)
    assert [e["name"] for e in one if e["occurrences"]] == ["dirty-ports"]

    table = hammersmith(*cli, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "5-year budget" in table.stdout and "SmokeScenarioFailing" in table.stdout
    unknown = hammersmith(*cli, "--site", "nowhere", cwd=tmp_path)
    assert unknown.returncode == 2 and "no site 'nowhere'" in unknown.stderr
