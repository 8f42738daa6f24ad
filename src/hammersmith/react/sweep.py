"""A sweep: one site, one snapshot, every hammer, through the safety layer, into the ledger.

Read it top to bottom: reconcile what a crash left in flight -> snapshot -> detect -> plan ->
static guards -> breaker -> per action: budget/escalate, rate, lock, re-fetch + re-check,
intent, API call, result. Observe mode stops before the lock and records what it would do.
An alert (act_on) enters the same path at "plan", from the live node instead of a snapshot.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from openstack.connection import Connection
from openstack.exceptions import NotFoundException

from hammersmith.cloud import snapshot as snapshot_mod
from hammersmith.cloud.connection import RequestObserver, SiteConnection
from hammersmith.config import Policy, Settings, Site
from hammersmith.detect.checks import Finding, finding
from hammersmith.react import hammers as registry
from hammersmith.react import notify, safety
from hammersmith.react.hammers import Action, Hammer
from hammersmith.store import Store

#: node fields kept as "before"/"after" in the ledger
FIELDS = (
    "provision_state",
    "target_provision_state",
    "maintenance",
    "maintenance_reason",
    "last_error",
    "power_state",
    "instance_uuid",
    "updated_at",
)
Outcome = Literal["observed", "refused", "succeeded", "failed", "escalated"]


def agent_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def agent_gone(agent: str | None) -> bool:
    """True when `agent` names a process on this host that no longer runs."""
    host, _, pid = (agent or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fields(node: dict[str, Any]) -> dict[str, Any]:
    return {k: node.get(k) for k in FIELDS}


@dataclass
class Result:
    """What one sweep found and did, for the CLI, notifications and the demo."""

    site: str
    apply: bool
    started_at: datetime
    findings: list[Finding] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    breaker: str | None = None
    reconciled: int = 0
    deferred: dict[str, int] = field(default_factory=dict)
    snapshot: snapshot_mod.Snapshot | None = None
    #: False for an alert's action: each incident links its own ledger row, even a repeated refusal
    dedupe: bool = True

    def add(self, action: Action, outcome: Outcome, mode: str, reason: str = "", **extra: Any) -> None:
        self.actions.append(
            {
                "hammer": action.hammer,
                "node": action.node_name,
                "node_uuid": action.node_uuid,
                "kind": action.kind,
                "mode": mode,
                "outcome": outcome,
                "reason": reason,
                **extra,
            }
        )

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for a in self.actions:
            counts[a["outcome"]] = counts.get(a["outcome"], 0) + 1
        return {
            "site": self.site,
            "apply": self.apply,
            "findings": len(self.findings),
            "outcomes": counts,
            "breaker": self.breaker,
            "skipped": self.skipped,
            "reconciled": self.reconciled,
            "deferred_by_rate_limit": self.deferred,
        }


class Sweeper:
    """Runs sweeps for one site; one instance per agent process."""

    def __init__(
        self,
        settings: Settings,
        site_name: str,
        store: Store,
        trigger: str = "sweep",
        observer: RequestObserver | None = None,
    ) -> None:
        self.settings = settings
        self.site_name = site_name
        self.site: Site = settings.sites[site_name]
        self.policy: Policy = self.site.policy
        self.store = store
        self.trigger = trigger
        self.agent = agent_id()
        self.connection = SiteConnection(site_name, self.site, observer)

    @property
    def conn(self) -> Connection:
        return self.connection.conn

    def close(self) -> None:
        self.connection.close()

    # -- start-up ------------------------------------------------------------------------
    def reconcile(self) -> int:
        """Settle actions a crash left in flight: look at the live node, record it, never repeat the call.

        Another agent's action still under way is left alone: its agent must be a dead process on
        this host, or its node lock must have expired.
        """
        settled = 0
        stale_before = datetime.now(UTC) - timedelta(seconds=self.policy.lock_ttl_seconds)
        for row in self.store.in_flight(self.site_name):
            if not (agent_gone(row.agent) or (row.started_at and row.started_at < stale_before)):
                continue
            try:
                after: dict[str, Any] | None = fields(safety.live_node(self.conn, row.node_uuid))
                error = None
            except Exception as exc:  # the node may be gone; the row must still be closed
                after, error = None, f"live state unreadable: {exc}"
            self.store.finish_action(
                row.id,
                outcome="reconciled",
                after=after,
                error=error,
                reason="left in flight by a stopped agent; live state recorded, not repeated",
            )
            settled += 1
        return settled

    # -- the sweep -------------------------------------------------------------------------
    def sweep(self, apply: bool = False) -> Result:
        now = datetime.now(UTC)
        result = Result(self.site_name, apply, now, reconciled=self.reconcile())
        snap = result.snapshot = snapshot_mod.take(self.connection)
        now = snap.started_at
        hammers = {n: h for n, h in registry.load().items() if self.policy.mode(n) != "off"}
        candidates: list[tuple[Hammer, Action, dict[str, Any]]] = []
        by_uuid = {n["uuid"]: n for n in snap.nodes}
        for name, hammer in hammers.items():
            if not snap.complete(*hammer.reads):
                result.skipped[name] = "incomplete snapshot for " + ", ".join(
                    s for s in hammer.reads if not snap.complete(s)
                )
                continue
            for found in hammer.detect(snap, self.policy):
                result.findings.append(found)
                self.store.record_finding(
                    site=self.site_name,
                    hammer=name,
                    node_uuid=found.node_uuid,
                    node_name=found.node_name,
                    summary=found.summary,
                    detail=found.detail,
                )
                for action in hammer.plan(found, self.policy):
                    node = by_uuid[action.node_uuid]
                    try:
                        safety.may_touch(hammer, node, self.policy, now)
                    except safety.Refused as exc:
                        self._record(result, action, "refused", str(exc), node)
                        continue
                    candidates.append((hammer, action, node))
        self._act(result, candidates, apply, now, lambda: len(snap.nodes))
        notify.sweep_batch(self.store, self.site, self.site_name, result, self.settings.http.base_url)
        self.store.record_sweep(
            site=self.site_name,
            started_at=result.started_at,
            finished_at=datetime.now(UTC),
            ok=not snap.incomplete,
            summary=result.summary(),
        )
        return result

    def act_on(self, hammer_name: str, node_ref: str, apply: bool = True) -> Result:
        """One hammer on one node, because an alert said so: re-read the live node (and its ports),
        ask the hammer whether it still matches, plan, then the sweep's own path (may_touch,
        budget/escalate, rate, breaker, lock, re-check, ledger, API call). `result.skipped["alert"]`
        says why nothing was planned; every planned action is in `result.actions` with its ledger row.
        """
        now = datetime.now(UTC)
        result = Result(self.site_name, apply, now, dedupe=False)
        hammer = registry.load().get(hammer_name)
        if hammer is None:
            result.skipped["alert"] = f"no hammer named {hammer_name!r}"
            return result
        if self.policy.mode(hammer_name) == "off":
            result.skipped["alert"] = f"hammer {hammer_name} is off at site {self.site_name}"
            return result
        try:
            node = safety.live_node(self.conn, node_ref)
        except NotFoundException:
            result.skipped["alert"] = f"node {node_ref!r} not found in Ironic"
            return result
        try:  # a hands-off node says why before "no longer matches" could hide it
            safety.may_touch(hammer, node, self.policy, now)
        except safety.Refused as exc:
            result.skipped["alert"] = f"refused by the safety layer: {exc}"
            return result
        summary = hammer.matches(node, safety.live_ports(self.conn, node["uuid"]), self.policy, now)
        if not summary:
            result.skipped["alert"] = f"{hammer_name} no longer matches node {node.get('name') or node['uuid']}"
            return result
        found = finding(hammer_name, node, summary, node.get("last_error") or "", node.get("provision_updated_at"))
        result.findings.append(found)
        candidates = [(hammer, action, node) for action in hammer.plan(found, self.policy)]
        if not candidates:
            result.skipped["alert"] = f"{hammer_name} reports only: it plans no action ({summary})"
        self._act(result, candidates, apply, now, self._fleet_size)
        return result

    def _fleet_size(self) -> int:
        """Nodes at the site now, for the breaker's percentage when no snapshot is at hand."""
        return sum(1 for _ in self.conn.baremetal.nodes(fields=["uuid"]))

    def _act(
        self,
        result: Result,
        candidates: list[tuple[Hammer, Action, dict[str, Any]]],
        apply: bool,
        now: datetime,
        fleet: Callable[[], int],
    ) -> None:
        """The path every planned action takes, whatever triggered it: budget and rate, breaker, then act or observe."""
        acting, observing = [], []
        for candidate in self._budget_and_rate(result, candidates, apply, now):
            (acting if apply and self.policy.mode(candidate[0].name) == "apply" else observing).append(candidate)
        if acting and not self._breaker_allows(result, acting, fleet(), now):
            acting = []
        for hammer, action, node in acting:
            self._apply(result, hammer, action, node)
        for _hammer, action, node in observing:
            self._record(result, action, "observed", f"would {action.kind}: {action.why}", node, "observe")

    def _budget_and_rate(
        self, result: Result, candidates: list[tuple[Hammer, Action, dict[str, Any]]], apply: bool, now: datetime
    ) -> list[tuple[Hammer, Action, dict[str, Any]]]:
        """Escalate exhausted budgets; keep each hammer within its per-sweep and per-hour rate."""
        kept = []
        per_sweep: dict[str, int] = {}
        hour_ago = now - timedelta(hours=1)
        for hammer, action, node in candidates:
            used = safety.attempts(self.store, self.site_name, hammer.name, node, self.policy, now)
            if used >= self.policy.budget.attempts:
                self._escalate(result, hammer, action, node, used, apply and self.policy.mode(hammer.name) == "apply")
                continue
            count = per_sweep.get(hammer.name, 0)
            hourly = self.store.applied_count(site=self.site_name, hammer=hammer.name, since=hour_ago) if apply else 0
            if count >= hammer.per_sweep(self.policy) or count + hourly >= self.policy.rate.per_hour:
                # deferred to a later sweep, counted but not one ledger row each (they would flood it)
                result.deferred[hammer.name] = result.deferred.get(hammer.name, 0) + 1
                continue
            per_sweep[hammer.name] = count + 1
            kept.append((hammer, action, node))
        return kept

    def _breaker_allows(
        self, result: Result, batch: list[tuple[Hammer, Action, dict[str, Any]]], fleet: int, now: datetime
    ) -> bool:
        """Fail closed: an open breaker, or a batch that trips it, applies nothing."""
        state = self.store.breaker(self.site_name)
        if state is None or not state.is_open:
            since = now - timedelta(minutes=self.policy.breaker.window_minutes)
            verdict = safety.breaker_verdict(
                len(batch), self.store.applied_count(site=self.site_name, since=since), fleet, self.policy
            )
            if not verdict.trip:
                return True
            self.store.open_breaker(self.site_name, verdict.reason)
            state = self.store.breaker(self.site_name)
            assert state is not None
            notify.breaker_opened(self.store, self.site, self.site_name, state.reason, state.opened_at)
        assert state is not None
        result.breaker = state.reason
        for _, action, node in batch:
            self._record(result, action, "refused", f"circuit breaker open: {state.reason}", node, "apply")
        return False

    def _escalate(
        self, result: Result, hammer: Hammer, action: Action, node: dict[str, Any], used: int, apply: bool
    ) -> None:
        """Give up: put the node in maintenance with our reason (so nothing retries it) and tell a human."""
        reason = f"hammersmith: {hammer.name} gave up after {used} attempts"
        if not apply:
            self._record(result, action, "observed", f"would escalate: {reason}", node, "observe")
            return
        try:
            with safety.node_lock(
                self.store, self.site_name, action.node_uuid, self.agent, self.policy.lock_ttl_seconds
            ):
                node = safety.recheck(hammer, action, self.conn, self.policy, datetime.now(UTC))
                reason = f"{reason}: {safety.last_error(self.conn, node) or action.why}"
                self.conn.baremetal.set_node_maintenance(action.node_uuid, reason=reason[:255])
        except safety.Refused as exc:
            self._record(result, action, "refused", f"escalation not needed: {exc}", node, "apply")
            return
        except Exception as exc:
            self._record(result, action, "refused", f"escalation failed: {safety.short_error(exc)}", node, "apply")
            return
        self._record(result, replace(action, kind="escalate", params={}), "escalated", reason, node, "apply")
        notify.escalation(self.store, self.site, self.site_name, hammer, action, reason, self.settings.http.base_url)

    def _apply(self, result: Result, hammer: Hammer, action: Action, node: dict[str, Any]) -> None:
        try:
            with safety.node_lock(
                self.store, self.site_name, action.node_uuid, self.agent, self.policy.lock_ttl_seconds
            ):
                live = safety.recheck(hammer, action, self.conn, self.policy, datetime.now(UTC))
                action_id = self.store.begin_action(
                    site=self.site_name,
                    hammer=hammer.name,
                    node_uuid=action.node_uuid,
                    node_name=action.node_name,
                    trigger=self.trigger,
                    kind=action.kind,
                    params=action.params,
                    before=fields(live),
                    agent=self.agent,
                )
                try:
                    recorded = safety.record_attempt(self.conn, live, hammer.name, self.policy, datetime.now(UTC))
                    hammer.execute(self.conn, action)
                except Exception as exc:  # an API error is a failed attempt, never a crash of the agent
                    self.store.finish_action(action_id, outcome="failed", error=safety.short_error(exc))
                    result.add(action, "failed", "apply", safety.short_error(exc), action_id=action_id)
                    return
                after_node = safety.live_node(self.conn, action.node_uuid)
                if not recorded:  # the node was mid-transition before; an abort has usually settled it
                    safety.record_attempt(self.conn, after_node, hammer.name, self.policy, datetime.now(UTC))
                after = fields(after_node)
                self.store.finish_action(action_id, outcome="succeeded", after=after)
                result.add(
                    action, "succeeded", "apply", action.why, before=fields(live), after=after, action_id=action_id
                )
        except safety.Refused as exc:
            self._record(result, action, "refused", str(exc), node, "apply")

    def _record(
        self,
        result: Result,
        action: Action,
        outcome: Outcome,
        reason: str,
        node: dict[str, Any],
        mode: str | None = None,
    ) -> None:
        mode = mode or ("apply" if result.apply and self.policy.mode(action.hammer) == "apply" else "observe")
        if result.dedupe and outcome in ("refused", "observed") and self._repeats(action, outcome, reason, mode):
            result.add(action, outcome, mode, reason)
            return  # the ledger already says exactly this, for this node, as its latest word
        action_id = self.store.record_action(
            site=self.site_name,
            hammer=action.hammer,
            node_uuid=action.node_uuid,
            node_name=action.node_name,
            trigger=self.trigger,
            mode=mode,
            kind=action.kind,
            params=action.params,
            outcome=outcome,
            reason=reason,
            before=fields(node),
            agent=self.agent,
        )
        result.add(action, outcome, mode, reason, action_id=action_id)

    def _repeats(self, action: Action, outcome: str, reason: str, mode: str) -> bool:
        """True when the node's latest row for this hammer is the same refusal or observation:
        a node left alone for weeks must not write a row every sweep."""
        last = self.store.actions(site=self.site_name, hammer=action.hammer, node=action.node_uuid, limit=1)
        return bool(last) and (last[0].outcome, last[0].mode, last[0].kind, last[0].reason) == (
            outcome,
            mode,
            action.kind,
            reason,
        )
