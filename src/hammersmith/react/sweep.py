"""A sweep: one site, one snapshot, every hammer, through the safety layer, into the ledger.

Read it top to bottom: reconcile what a crash left in flight -> snapshot -> verify earlier actions
(follow-ups, fixed or ineffective) -> detect -> plan -> static guards -> budget (escalate when spent
or when the same action was ineffective), rate -> breaker (distinct nodes) -> per action: lock,
re-fetch + re-check, intent (breaker and hourly rate decided atomically with it), API call -> wait
for the nodes to settle -> follow-ups -> verify: fixed, ineffective, or left pending for a later sweep.
Observe mode stops before the lock and records what it would do. An alert (act_on) enters the same
path at "plan", from the live node instead of a snapshot.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from openstack.connection import Connection
from openstack.exceptions import NotFoundException

from hammersmith.cloud import snapshot as snapshot_mod
from hammersmith.cloud.connection import RequestObserver, SiteConnection
from hammersmith.config import Policy, Settings, Site
from hammersmith.detect import reservations
from hammersmith.detect.checks import Finding, finding
from hammersmith.maintenance import workflow
from hammersmith.react import hammers as registry
from hammersmith.react import notify, safety
from hammersmith.react.hammers import Action, Hammer, Live
from hammersmith.store import Store
from hammersmith.store.ledger import Denied, Guard, describe, stable
from hammersmith.store.models import ActionRow, BreakerRow
from hammersmith.store.pauses import held

log = logging.getLogger(__name__)

Outcome = Literal[
    "observed", "refused", "succeeded", "failed", "escalated", "fixed", "ineffective", "unverified", "reconciled"
]


def agent_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
    #: earlier actions verified (or followed up) at the start of this sweep
    verified: list[dict[str, Any]] = field(default_factory=list)
    #: what broke the sweep after its snapshot (the sweep still records itself and notifies)
    error: str | None = None
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
            "verified": dict(Counter(v["outcome"] for v in self.verified)),
            "deferred_by_rate_limit": self.deferred,
            "error": self.error,
        }


@dataclass
class Acting:
    """An action whose API call returned, waiting (under its lock) for the node to settle and be verified."""

    hammer: Hammer
    action: Action
    action_id: int
    lease: safety.Lease
    before: dict[str, Any]
    after: dict[str, Any] | None = None


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
        #: project ID -> name from the latest snapshot, for the lease holds re-read before each action
        self.project_names: dict[str, str] = {}

    @property
    def conn(self) -> Connection:
        return self.connection.conn

    @property
    def memory(self) -> registry.Memory:
        """What hammers remember across sweeps, for this site (set for each sweep and alert this thread runs)."""
        return registry.Memory(self.store, self.connection)

    def close(self) -> None:
        self.connection.close()

    # -- start-up ------------------------------------------------------------------------
    def reconcile(self) -> int:
        """Settle actions (escalations included) a crash left in flight: look at the live node, record it, never
        repeat the call.

        Another agent's action still under way is left alone: its agent must be a dead process on
        this host, or its node lock must have expired.
        """
        settled = 0
        stale_before = datetime.now(UTC) - timedelta(seconds=self.policy.lock_ttl_seconds)
        for row in self.store.in_flight(self.site_name):
            if not (safety.agent_gone(row.agent) or (row.started_at and row.started_at < stale_before)):
                continue
            try:
                after: dict[str, Any] | None = self._state(row.hammer, row.node_uuid)
                error = None
            except Exception as exc:  # the subject may be gone; the row must still be closed
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
        registry.MEMORY.set(self.memory)
        result = Result(self.site_name, apply, datetime.now(UTC), reconciled=self.reconcile())
        snap = result.snapshot = snapshot_mod.take(self.connection)
        # maintenances move on before planning, so a node that just went into one is hands-off in this very sweep
        workflow.advance_site(self.site_name, self.site, self.connection, self.store, snap.nodes)
        self.project_names.update(snap.project_names)
        evaluated: set[str] = set()
        try:
            notify.forget_released(self.store, self.site_name, snap)
            busy = self._verify_pending(result, snap, apply)
            candidates = self._plan(result, snap, busy, evaluated)
            self._act(result, candidates, apply, snap.now, lambda: len(snap.nodes))
        except Exception as exc:  # a store or API failure mid-sweep: record what was done, tell someone
            log.exception("site %s: sweep failed after its snapshot", self.site_name)
            result.error = safety.short_error(exc)
        self._finish(result, snap, evaluated)
        return result

    def _plan(
        self, result: Result, snap: snapshot_mod.Snapshot, busy: dict[str, str], evaluated: set[str]
    ) -> list[tuple[Hammer, Action, dict[str, Any]]]:
        """Detect with every hammer that is not off and has complete data; plan; apply the static guards."""
        hammers = {n: h for n, h in registry.load().items() if self.policy.mode(n) != "off"}
        candidates: list[tuple[Hammer, Action, dict[str, Any]]] = []
        booked = reservations.of(snap)
        # a human's pause and hammersmith's own maintenance hold actions back; detection goes on
        paused, managed = self.store.pauses(self.site_name, snap.now), self.store.managed_maintenance(self.site_name)
        for name, hammer in hammers.items():
            if not all(snap.offers(s) for s in hammer.reads):
                continue  # a hammer for services this site does not have
            if not snap.complete(*hammer.reads):
                result.skipped[name] = "incomplete snapshot for " + ", ".join(
                    s for s in hammer.reads if not snap.complete(s)
                )
                continue
            unread = [f"{n}: {snap.unread.get(n, 'not read')}" for n in hammer.listings if snap.data.get(n) is None]
            if unread:
                result.skipped[name] = "; ".join(unread)
                continue
            evaluated.add(name)
            subjects = hammer.subjects(snap)
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
                node = subjects[found.node_uuid]
                ports = snap.ports_by_node.get(found.node_uuid, [])
                for action in hammer.plan(found, node, ports, self.policy):
                    try:
                        if why := held(paused, managed, name, action.node_uuid):
                            raise safety.Refused(why)
                        if action.node_uuid in busy and not hammer.transient_ok:  # stuck-transient unsticks it
                            raise safety.Refused(busy[action.node_uuid])
                        hammer.guard(node, self.policy, snap.now, self.conn, booked)
                    except safety.Refused as exc:
                        self._record(result, action, "refused", str(exc), node)
                        continue
                    candidates.append((hammer, action, node))
        return candidates

    def _finish(self, result: Result, snap: snapshot_mod.Snapshot, evaluated: set[str]) -> None:
        """Notify, forget what was resolved, apply retention, and record the sweep, each step on its own."""
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("notify", lambda: notify.sweep_batch(self.store, self.site, self.site_name, result, self.base_url)),
            ("forget resolved", lambda: notify.forget_resolved(self.store, self.site_name, result, evaluated)),
            ("retention", lambda: self._purge(snap.now)),
        ]
        for what, step in steps:
            if what == "forget resolved" and result.error:
                continue  # a sweep cut short saw only some findings: it cannot tell what was resolved
            try:
                step()
            except Exception as exc:
                log.warning("site %s: %s after the sweep failed: %s", self.site_name, what, safety.short_error(exc))
                result.error = result.error or f"{what}: {safety.short_error(exc)}"
        if result.error:
            notify.sweep_failed(self.site, self.site_name, result.error)  # never raises
        self.store.record_sweep(
            site=self.site_name,
            started_at=result.started_at,
            finished_at=datetime.now(UTC),
            ok=not snap.incomplete and not result.error,
            summary={**result.summary(), "nodes": snap.summary()["nodes"]},  # the dashboard plots it over time
        )

    def _purge(self, now: datetime) -> None:
        keep = self.policy.retention
        self.store.purge(
            self.site_name,
            findings_before=now - timedelta(days=keep.findings_days),
            actions_before=now - timedelta(days=keep.ledger_days),
        )
        self.store.purge_incidents(
            self.site_name,
            deliveries_before=now - timedelta(days=keep.deliveries_days),
            incidents_before=now - timedelta(days=keep.incidents_days),
        )
        # probe and smoke outcomes: the status page's 90-day history bar, and a margin
        self.store.purge_results(self.site_name, now - timedelta(days=100))

    @property
    def base_url(self) -> str:
        return self.settings.http.base_url

    def act_on(self, hammer_name: str, node_ref: str, apply: bool = True) -> Result:
        """One hammer on one node, because an alert said so: re-read the live node (and its ports),
        ask the hammer whether it still matches, plan, then the sweep's own path (may_touch,
        budget/escalate, rate, breaker, lock, re-check, ledger, API call, verification).
        `result.skipped["alert"]` says why nothing was planned; every planned action is in
        `result.actions` with its ledger row.
        """
        registry.MEMORY.set(self.memory)
        result = Result(self.site_name, apply, datetime.now(UTC), dedupe=False)
        hammer = registry.load().get(hammer_name)
        if hammer is None:
            result.skipped["alert"] = f"no hammer named {hammer_name!r}"
            return result
        if self.policy.mode(hammer_name) == "off":
            result.skipped["alert"] = f"hammer {hammer_name} is off at site {self.site_name}"
            return result
        problem = safety.node_ref_problem(node_ref) if hammer.subject == "node" else None
        if problem is not None:
            result.skipped["alert"] = f"{problem}: not sent to Ironic"
            return result
        try:
            now = hammer.read(self.connection, node_ref)
        except NotFoundException:
            result.skipped["alert"] = f"{hammer.subject} {node_ref!r} not found"
            return result
        node = now.node
        pending = self.store.pending(self.site_name, node["uuid"])
        if pending and not hammer.transient_ok:
            result.skipped["alert"] = being_verified(pending[0])
            return result
        try:  # a hands-off node says why before "no longer matches" could hide it
            paused, managed = self.store.pauses(self.site_name), self.store.managed_maintenance(self.site_name)
            if why := held(paused, managed, hammer_name, node["uuid"]):
                raise safety.Refused(why)
            hammer.guard(node, self.policy, now.now, self.conn, self._reservations())
        except safety.Refused as exc:
            result.skipped["alert"] = f"refused by the safety layer: {exc}"
            return result
        summary = hammer.matches_live(now, self.policy)
        if not summary:
            result.skipped["alert"] = f"{hammer_name} no longer matches node {node.get('name') or node['uuid']}"
            return result
        found = finding(hammer_name, node, summary, node.get("last_error") or "", node.get("provision_updated_at"))
        result.findings.append(found)
        candidates = [(hammer, action, node) for action in hammer.plan(found, node, now.ports, self.policy)]
        if not candidates:
            result.skipped["alert"] = f"{hammer_name} reports only: it plans no action ({summary})"
        # no waiting here: the webhook worker serves one alert at a time; the agent's next sweep verifies the fix
        self._act(result, candidates, apply, now.now, self._fleet_size, wait=0)
        return result

    def _reservations(self) -> reservations.Reservations:
        """Blazar read again right before deciding on one node: a lease may have started since the snapshot."""
        return reservations.live(self.connection.adapter("reservation"), self.project_names)

    def _fleet_size(self) -> int:
        """Nodes at the site now, for the breaker's percentage when no snapshot is at hand."""
        return sum(1 for _ in self.conn.baremetal.nodes(fields=["uuid"]))

    # -- verification of earlier actions ---------------------------------------------------
    def _verify_pending(self, result: Result, snap: snapshot_mod.Snapshot, apply: bool) -> dict[str, str]:
        """Earlier actions whose node was still busy: follow up and verify those settled now (under their locks,
        waiting as an acting sweep does); return the nodes still pending, with the reason other hammers must leave
        them alone meanwhile. Survives restarts: the pending state is the ledger row."""
        busy: dict[str, str] = {}
        hammers = registry.load()
        subjects = {
            name: h.subjects(snap)
            for name, h in hammers.items()
            if snap.complete(*h.reads) and all(snap.data.get(n) is not None for n in h.listings)
        }
        with ExitStack() as locks:
            ready = []
            for row in self.store.pending(self.site_name):
                hammer = hammers.get(row.hammer)
                node = subjects.get(row.hammer, {}).get(row.node_uuid)
                wait = being_verified(row)
                if hammer is None:
                    self._settle_row(result, row, "unverified", f"hammer {row.hammer} is not installed", row.after)
                elif row.hammer not in subjects or not (apply and self.policy.mode(row.hammer) == "apply"):
                    busy[row.node_uuid] = wait  # partial data proves nothing; a follow-up is an action
                elif node is None and hammer.subject == "node":
                    self._settle_row(result, row, "unverified", "node no longer exists", row.after)
                elif node is not None and not hammer.settled(Live(node, [], snap.now)):
                    expired = row.started_at and snap.now - row.started_at > timedelta(
                        minutes=self.policy.verify_timeout_minutes
                    )
                    if expired and row.params.get("return_to") != "available":  # owed a return: never expires
                        why = f"did not settle within {self.policy.verify_timeout_minutes:g} min"
                        self._settle_row(result, row, "unverified", why, hammer.fields(node))
                    else:
                        busy[row.node_uuid] = wait
                else:
                    busy[row.node_uuid] = wait
                    try:
                        lease = locks.enter_context(self._lock(row.node_uuid))
                    except safety.Refused:
                        continue
                    ready.append(Acting(hammer, as_action(row), row.id, lease, row.before or {}, row.after))
            left = self._settle(result, ready, self.policy.verify_seconds, verified=result.verified)
        done = {a.action.node_uuid for a in ready} - {a.action.node_uuid for a in left}
        return {uuid: why for uuid, why in busy.items() if uuid not in done}

    def _settle_row(self, result: Result, row: ActionRow, outcome: str, why: str, after: dict[str, Any] | None) -> None:
        self.store.finish_action(row.id, outcome=outcome, reason=f"{row.reason}; {why}", after=after)
        result.verified.append({"action_id": row.id, "node": row.node_name, "outcome": outcome})

    # -- acting ------------------------------------------------------------------------------
    def _act(
        self,
        result: Result,
        candidates: list[tuple[Hammer, Action, dict[str, Any]]],
        apply: bool,
        now: datetime,
        fleet: Callable[[], int],
        wait: float | None = None,
    ) -> None:
        """The path every planned action takes, whatever triggered it: budget and rate, breaker, then act or observe;
        the acted nodes are then waited on together (`wait`, default policy.verify_seconds) and verified."""
        acting, observing = [], []
        for candidate in self._budget_and_rate(result, candidates, apply, now):
            (acting if apply and self.policy.mode(candidate[0].name) == "apply" else observing).append(candidate)
        size = fleet() if acting else 0
        if acting and not self._breaker_allows(result, acting, size, now):
            acting = []
        with ExitStack() as locks:  # every acted node stays locked until it is verified (or left pending)
            started = [a for h, action, node in acting if (a := self._apply(result, h, action, node, size, locks))]
            self._settle(result, started, self.policy.verify_seconds if wait is None else wait)
        for _hammer, action, node in observing:
            self._record(result, action, "observed", f"would {action.kind}: {action.why}", node, "observe")

    def _budget_and_rate(
        self, result: Result, candidates: list[tuple[Hammer, Action, dict[str, Any]]], apply: bool, now: datetime
    ) -> list[tuple[Hammer, Action, dict[str, Any]]]:
        """Escalate exhausted budgets and actions already shown ineffective; keep each hammer within its
        per-sweep and per-hour rate."""
        kept = []
        per_sweep: dict[str, int] = {}
        hour_ago = now - timedelta(hours=1)
        window = now - timedelta(days=self.policy.budget.window_days)
        for hammer, action, node in candidates:
            acts = apply and self.policy.mode(hammer.name) == "apply"
            at_once = hammer.escalate_now(action)  # a cause no action fixes: a human's, like a spent budget
            try:
                used = safety.attempts(self.store, self.site_name, hammer, action.node_uuid, node, self.policy, now)
            except safety.Refused as exc:  # an unreadable record on one node refuses that node only
                self._record(result, action, "refused", str(exc), node)
                continue
            give_up = at_once or (f"gave up after {used} attempts" if used >= self.policy.budget.attempts else None)
            if not give_up and self.store.ineffective(
                site=self.site_name, hammer=hammer.name, node_uuid=action.node_uuid, kind=action.kind, since=window
            ):
                give_up = f"gave up: its last {action.kind} was ineffective"
            if give_up and self._gave_up(hammer, action):
                self._record(result, action, "refused", "given up on earlier: waiting for a human", node)
            elif give_up:
                self._escalate(result, hammer, action, node, give_up, acts)
            if give_up:
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
        """Fail closed: an open breaker, or a batch that trips it, applies nothing. Nodes are counted, not actions:
        retries on one node are the budget's business. (begin_action decides again, atomically, per action.)"""
        state = self.store.breaker(self.site_name)
        if state is None or not state.is_open:
            recent = self.store.acted_nodes(self.site_name, now - timedelta(minutes=self.policy.breaker.window_minutes))
            known = {uuid for _, uuid, _ in recent}
            new = {action.node_uuid for _, action, _ in batch} - known
            verdict = safety.breaker_verdict(len(new), len(known), fleet, self.policy)
            if not verdict.trip:
                return True
            driven = describe([*recent, *((a.hammer, a.node_uuid, a.node_name) for _, a, _ in batch)])
            self.store.open_breaker(self.site_name, f"{verdict.reason}; driven by {driven}")
            state = self._breaker_opened(result)
        result.breaker = state.reason
        for _, action, node in batch:
            self._record(result, action, "refused", f"circuit breaker open: {state.reason}", node, "apply")
        return False

    def _breaker_opened(self, result: Result) -> BreakerRow:
        """This agent opened the breaker: say why in the sweep's result and tell a human (once per opening)."""
        state = self.store.breaker(self.site_name)
        assert state is not None
        result.breaker = state.reason
        notify.breaker_opened(self.store, self.site, self.site_name, state.reason, state.opened_at)
        return state

    def _guard(self, fleet: int) -> Guard:
        def verdict(nodes: int) -> str:
            decided = safety.breaker_verdict(nodes, 0, fleet, self.policy)
            return decided.reason if decided.trip else ""

        return Guard(self.policy.rate.per_hour, self.policy.breaker.window_minutes, verdict)

    def _lock(self, node_uuid: str) -> AbstractContextManager[safety.Lease]:
        return safety.node_lock(self.store, self.site_name, node_uuid, self.agent, self.policy.lock_ttl_seconds)

    def _gave_up(self, hammer: Hammer, action: Action) -> bool:
        """A subject other than a node has no maintenance to hold it: a mark does, from its escalation until the
        hammer no longer finds it (notify.forget_resolved), so a fault that comes back is escalated again."""
        return hammer.subject != "node" and self.store.already_notified(self.site_name, notify.held(hammer, action))

    def _escalate(
        self, result: Result, hammer: Hammer, action: Action, node: dict[str, Any], why: str, apply: bool
    ) -> None:
        """Give up: put the node in maintenance with our reason (so nothing retries it) and tell a human.
        Write-ahead like every action: the intent row first, then the maintenance call. Another subject has no
        maintenance: the escalation is the ledger row and the message (its budget keeps the hammer off it)."""
        reason = f"hammersmith: {hammer.name} {why}"
        escalate = replace(action, kind="escalate", params={})
        if not apply:
            self._record(result, action, "observed", f"would escalate: {reason}", node, "observe")
            return
        try:
            with self._lock(action.node_uuid):
                live = safety.recheck(hammer, action, self.connection, self.policy, self._reservations())
                error = safety.last_error(self.conn, live.node) if hammer.subject == "node" else ""
                reason = f"{reason}: {error or action.why}"[:255]
                action_id = self._begin(replace(escalate, params={"reason": reason}), live.node)
                try:
                    if hammer.subject == "node":
                        safety.call(self.conn, "put", f"/nodes/{action.node_uuid}/maintenance", {"reason": reason})
                except Exception as exc:
                    self.store.finish_action(action_id, outcome="failed", error=safety.short_error(exc))
                    result.add(escalate, "failed", "apply", safety.short_error(exc), action_id=action_id)
                    return
                self.store.finish_action(action_id, outcome="escalated", reason=reason, after=self._after(action))
        except safety.Refused as exc:
            self._record(result, action, "refused", f"escalation not needed: {exc}", node, "apply")
            return
        result.add(escalate, "escalated", "apply", reason, action_id=action_id)
        if hammer.subject != "node":
            self.store.mark_notified(self.site_name, notify.held(hammer, action))
        notify.escalation(self.store, self.site, self.site_name, hammer, action, reason, self.base_url)

    def _begin(self, action: Action, node: dict[str, Any], guard: Guard | None = None) -> int:
        """The intent row, committed before any API call (Denied when the guard says no)."""
        return self.store.begin_action(
            site=self.site_name,
            hammer=action.hammer,
            node_uuid=action.node_uuid,
            node_name=action.node_name,
            trigger=self.trigger,
            kind=action.kind,
            params=action.params,
            before=registry.load()[action.hammer].fields(node),
            agent=self.agent,
            guard=guard,
        )

    def _state(self, hammer_name: str, key: str) -> dict[str, Any] | None:
        """The subject's ledger fields as the APIs show it now ({"exists": False} once it is gone)."""
        hammer = registry.load()[hammer_name]
        try:
            return hammer.fields(hammer.read(self.connection, key).node)
        except NotFoundException:
            if hammer.subject == "node":
                raise
            return {"exists": False}

    def _after(self, action: Action) -> dict[str, Any] | None:
        """The subject after an action, for the ledger; None if it cannot be read (recorded, never raised)."""
        try:
            return self._state(action.hammer, action.node_uuid)
        except Exception:
            return None

    def _apply(
        self, result: Result, hammer: Hammer, action: Action, node: dict[str, Any], fleet: int, locks: ExitStack
    ) -> Acting | None:
        """Lock, re-check, write the intent (breaker and rate decided with it), call the API. The lock is kept in
        `locks` until the node is verified. None when refused or failed (already recorded)."""
        held = ExitStack()
        try:
            lease = held.enter_context(self._lock(action.node_uuid))
            live = safety.recheck(hammer, action, self.connection, self.policy, self._reservations())
            action_id = self._begin(action, live.node, self._guard(fleet))
        except Denied as exc:
            held.close()
            if exc.opened:
                self._breaker_opened(result)
            self._record(result, action, "refused", str(exc), node, "apply")
            return None
        except safety.Refused as exc:
            held.close()
            self._record(result, action, "refused", str(exc), node, "apply")
            return None
        except Exception as exc:  # the re-check's read or the intent's write failed: nothing was called
            held.close()
            self._record(result, action, "refused", f"not re-checked: {safety.short_error(exc)}", node, "apply")
            return None
        except BaseException:
            held.close()
            raise
        locks.enter_context(held)  # held until verified (or left pending) with the rest of the batch
        before = hammer.fields(live.node)
        node_subject = hammer.subject == "node"
        try:  # a node also keeps its attempts in its own `extra`; other subjects rely on the ledger
            recorded = not node_subject or safety.record_attempt(
                self.conn, live.node, hammer.name, self.policy, live.now
            )
            hammer.execute(self.conn, action, live, lease)
        except safety.Locked as exc:  # someone else is working on the node: stop here, do not wait or go on
            self.store.finish_action(action_id, outcome="refused", reason=str(exc), after=self._after(action))
            result.add(action, "refused", "apply", str(exc), action_id=action_id)
            return None
        except Exception as exc:  # an API error is a failed attempt, never a crash of the agent
            error = safety.short_error(exc)
            self.store.finish_action(action_id, outcome="failed", error=error, after=self._after(action))
            result.add(action, "failed", "apply", error, action_id=action_id)
            return None
        acting = Acting(hammer, action, action_id, lease, before)
        try:  # the call returned: from here on a failure leaves the action unverified, never unrecorded
            if not recorded:  # the node was mid-transition before; an abort has usually settled it
                safety.record_attempt(
                    self.conn, safety.live_node(self.conn, action.node_uuid), hammer.name, self.policy, live.now
                )
            acting.after = self._state(hammer.name, action.node_uuid)
            self.store.finish_action(action_id, outcome="succeeded", reason=action.why, after=acting.after)
        except Exception as exc:
            self._unverified(result, acting, exc)
            return None
        return acting

    def _unverified(self, result: Result, acting: Acting, exc: Exception, verified: list | None = None) -> None:
        error = f"after the call: {safety.short_error(exc)}"
        log.warning("site %s: %s on %s: %s", self.site_name, acting.hammer.name, acting.action.node_name, error)
        try:
            self.store.finish_action(acting.action_id, outcome="unverified", error=error, after=acting.after)
        except Exception as store_exc:
            log.error("site %s: ledger row #%s not settled: %s", self.site_name, acting.action_id, store_exc)
        entry = {"action_id": acting.action_id, "node": acting.action.node_name, "outcome": "unverified"}
        if verified is not None:
            verified.append(entry)
        else:
            result.add(acting.action, "unverified", "apply", error, action_id=acting.action_id, before=acting.before)

    def _settle(
        self, result: Result, acting: list[Acting], seconds: float, verified: list | None = None
    ) -> list[Acting]:
        """Wait (bounded, renewing the locks) for the acted nodes to settle, run each hammer's follow-up, then ask
        the hammer's own `matches` again: fixed or ineffective. Nodes still busy stay `succeeded`: pending, verified
        by a later sweep. With `verified`, results go there (earlier actions) rather than into this sweep's actions."""
        deadline = time.monotonic() + seconds
        waiting, lost = list(acting), []
        while waiting:
            still = []
            for item in waiting:
                try:
                    try:
                        now = item.hammer.read(self.connection, item.action.node_uuid)
                    except NotFoundException:
                        if item.hammer.subject == "node":
                            raise
                        now = None  # a leftover object removed: that is its fix
                    if now is None:
                        item.after, summary = {"exists": False}, None
                    else:
                        item.after = item.hammer.fields(now.node)
                        if not item.hammer.settled(now) or item.hammer.follow_up(self.conn, item.action, now.node):
                            still.append(item)
                            continue
                        summary = item.hammer.matches_live(now, self.policy)
                    outcome = "ineffective" if summary else "fixed"
                    why = f"still there after it settled: {summary}" if summary else "verified: the fault is gone"
                    self.store.finish_action(
                        item.action_id,
                        outcome=outcome,
                        reason=f"{item.action.why}; {why}",
                        after=item.after,
                        verified=True,
                    )
                except safety.Locked:  # someone else is working on it: look again, never wait through their lock
                    still.append(item)
                    continue
                except Exception as exc:
                    self._unverified(result, item, exc, verified)
                    continue
                self._verified(result, item, outcome, why, verified)
            waiting = still
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
            for item in list(waiting):
                try:
                    item.lease.renew()
                except safety.Refused:  # lost: no follow-up without the lock; a later sweep verifies it
                    waiting.remove(item)
                    lost.append(item)
        waiting += lost
        for item in waiting:  # pending: the row stays `succeeded` with the latest state seen
            if verified is None:
                why = f"{item.action.why}; not settled within {seconds:g} s: verified by a later sweep"
                result.add(
                    item.action,
                    "succeeded",
                    "apply",
                    why,
                    action_id=item.action_id,
                    before=item.before,
                    after=item.after,
                )
        return waiting

    def _verified(self, result: Result, item: Acting, outcome: str, why: str, verified: list | None) -> None:
        if verified is not None:
            verified.append({"action_id": item.action_id, "node": item.action.node_name, "outcome": outcome})
            return
        result.add(
            item.action,
            outcome,  # type: ignore[arg-type]
            "apply",
            f"{item.action.why}; {why}",
            action_id=item.action_id,
            before=item.before,
            after=item.after,
        )

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
            before=registry.load()[action.hammer].fields(node),
            agent=self.agent,
        )
        result.add(action, outcome, mode, reason, action_id=action_id)

    def _repeats(self, action: Action, outcome: str, reason: str, mode: str) -> bool:
        """True when the node's latest row for this hammer is the same refusal or observation, numbers aside
        ("changed 12 s ago" is "changed 17 s ago"): a node left alone for weeks must not write a row every sweep."""
        last = self.store.actions(site=self.site_name, hammer=action.hammer, node=action.node_uuid, limit=1)
        return bool(last) and (last[0].outcome, last[0].mode, last[0].kind, stable(last[0].reason or "")) == (
            outcome,
            mode,
            action.kind,
            stable(reason),
        )


def being_verified(row: ActionRow) -> str:
    """Why a node with a pending action is left alone (by other hammers, and by alerts)."""
    return f"action #{row.id} ({row.hammer} {row.kind}) is still being verified"


def as_action(row: ActionRow) -> Action:
    return Action(row.hammer, row.node_uuid, row.node_name or row.node_uuid, row.kind, row.reason or "", row.params)
