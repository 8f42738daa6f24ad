"""The hammer registry. A hammer is one module: what it detects, what it plans, how it acts.

Built-ins are listed in BUILTIN and loaded like any plugin; sites add their own through the
`hammersmith.hammers` entry point group. Each hammer has a runbook (react/runbooks/<name>.md)
and a test under its name. Hammers never decide whether they *may* act: that is the safety
layer's job (react.safety), the same for every trigger.

Most hammers act on an Ironic node. A cross-service hammer acts on another *subject* (a floating IP, a
lease, a Placement provider...): it overrides `subjects`, `read`, `matches_live`, `guard` and `fields`, and
goes through the same path (budget, rate, breaker, lock, re-check, ledger, verification) under the key
"<subject>/<id>".
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from openstack.connection import Connection

from hammersmith.cloud.connection import SiteConnection
from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, finding
from hammersmith.detect.reservations import Reservations
from hammersmith.plugins import load_plugins

if TYPE_CHECKING:
    from hammersmith.react.safety import Lease
    from hammersmith.store import Store

BUILTIN = (
    "error_resetter",
    "clean_failed",
    "dirty_ports",
    "stuck_transient",
    "maintenance_doctor",
    "stale_inspection",
    "undead_instances",
    "conflicting_macs",
    "orphan_resource_providers",
    "floating_ip_reaper",
    "unutilized_lease_reaper",
    "lease_start_reminder",
    "retirement_enforcer",
    "freepool_consistency",
    "orphans",
    "mysql_replication",
)
RUNBOOKS = Path(__file__).parent.parent / "runbooks"
#: node fields kept as "before"/"after" in the ledger
NODE_FIELDS = (
    "provision_state",
    "target_provision_state",
    "maintenance",
    "maintenance_reason",
    "last_error",
    "power_state",
    "instance_uuid",
    "fault",
    "updated_at",
)


@dataclass(frozen=True)
class Live:
    """A subject as the APIs show it now (for a node: the node, its ports), the service's clock at that moment, and
    what a cross-service hammer read beside it to decide (`context`)."""

    node: dict[str, Any]
    ports: list[dict[str, Any]]
    now: datetime
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Memory:
    """The store and connection of the site being swept: what a hammer remembers across sweeps (a notice sent) lives
    in the store, not in the objects it looks at; `connection` names the site (.name), its config (.site), .conn."""

    store: Store
    connection: SiteConnection


#: set by the sweep (per thread) for the site it runs; None outside a sweep: nothing is remembered
MEMORY: ContextVar[Memory | None] = ContextVar("hammersmith_memory", default=None)


@dataclass(frozen=True)
class Action:
    """One change a hammer wants to make to one node."""

    hammer: str
    node_uuid: str
    node_name: str
    kind: str
    why: str
    params: dict[str, Any] = field(default_factory=dict)


class Hammer:
    """Base class: subclasses set `name` and implement `matches` (and `plan`/`execute` if they act)."""

    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ("ironic",)
    #: optional snapshot listings it needs besides (cloud.snapshot.Listing.optional)
    listings: ClassVar[tuple[str, ...]] = ()
    #: Ironic's own maintenance `fault` this hammer may act through (e.g. "clean failure")
    fault: ClassVar[str | None] = None
    #: may act on a node in a transient provision state (only the hammer whose error *is* that)
    transient_ok: ClassVar[bool] = False
    #: what it acts on: "node", or another object's kind ("floating-ip", "lease", ...), keyed "<subject>/<id>"
    subject: ClassVar[str] = "node"
    #: the alert label that names its subject (an alert mapped to this hammer acts on that label's value)
    alert_label: ClassVar[str] = "node"

    @property
    def runbook(self) -> Path:
        return RUNBOOKS / f"{self.name}.md"

    @property
    def doc(self) -> str:
        return (type(self).__doc__ or "").strip().splitlines()[0]

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        """The finding's summary if this node has the known error, else None."""
        raise NotImplementedError

    def detect(self, snapshot: Snapshot, policy: Policy) -> list[Finding]:
        found = []
        for node in snapshot.nodes:
            summary = self.matches(node, snapshot.ports_by_node.get(node["uuid"], []), policy, snapshot.now)
            if summary:
                found.append(
                    finding(self.name, node, summary, node.get("last_error") or "", node.get("provision_updated_at"))
                )
        return found

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        """The actions that fix it, with what was checked in their params; [] for report-only hammers."""
        return []

    def still_planned(self, action: Action, node: dict[str, Any], ports: list[dict[str, Any]]) -> bool:
        """On the live node under the lock: is what the action was planned on still there? (act on what was
        checked, not on whatever is there now)"""
        return True

    def escalate_now(self, action: Action) -> str | None:
        """Why this planned action goes to a human at once instead of being tried (a cause no action of this
        hammer fixes), else None; it then escalates like a spent budget, once."""
        return None

    # -- the subject: an Ironic node unless a cross-service hammer says otherwise --------------------
    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        """What this hammer may act on, by ledger key, as the snapshot saw it."""
        return {n["uuid"]: n for n in snapshot.nodes}

    def read(self, site: SiteConnection, key: str) -> Live:
        """The subject as the APIs show it now, with what `matches_live` needs; NotFoundException when it is gone."""
        from hammersmith.react import safety

        return safety.live(site.conn, key)

    def matches_live(self, live: Live, policy: Policy) -> str | None:
        """`matches` on what was read live (the re-check before acting, and the verification after)."""
        return self.matches(live.node, live.ports, policy, live.now)

    def guard(
        self, subject: dict[str, Any], policy: Policy, now: datetime, conn: Connection, reservations: Reservations
    ) -> None:
        """The must-not-touch rules for the subject: raise safety.Refused with the reason."""
        from hammersmith.react import safety

        safety.may_touch(self, subject, policy, now, safety.history_for(conn, subject), reservations)

    def fields(self, subject: dict[str, Any]) -> dict[str, Any]:
        """What the ledger keeps of the subject as "before" and "after"."""
        return {k: subject.get(k) for k in NODE_FIELDS}

    def settled(self, live: Live) -> bool:
        """Whether the subject is done changing after an action, so the fix can be verified."""
        from hammersmith.react import safety

        return safety.settled(live.node)

    def per_sweep(self, policy: Policy) -> int:
        """How many actions this hammer may take in one sweep."""
        return policy.rate.per_sweep

    def execute(self, conn: Connection, action: Action, live: Live, lease: Lease) -> None:
        """Make the API call(s) through react.safety.call/provision (no waiting through another party's lock);
        raise on failure (a failed attempt). `live` is the node re-checked under `lease`; renew it when waiting."""
        raise NotImplementedError

    def follow_up(self, conn: Connection, action: Action, node: dict[str, Any]) -> bool:
        """Once the node has settled after the action: a step still owed (return a node where it was); True if one
        was made (the node is then waited on again before the fix is verified)."""
        return False


class ObjectHammer(Hammer):
    """A hammer whose subject is not an Ironic node (a floating IP, a lease, a Placement provider, a replica).

    One judgement serves detection on the snapshot and the re-check and verification on live data: `judge`
    looks at the subject and the facts beside it (`context`: from the snapshot, or read live by `read`).
    Subjects are the objects as the API lists them plus "uuid" (the ledger key) and "name" (for people).
    """

    reads = ()
    #: the subject's fields the ledger keeps as "before" and "after"
    kept: ClassVar[tuple[str, ...]] = ()

    def key(self, ident: str) -> str:
        return f"{self.subject}/{ident}"

    def ident(self, key: str) -> str:
        """The object's own ID in its service (a key or an alert's label without the subject prefix)."""
        return key.removeprefix(f"{self.subject}/")

    def subject_of(self, obj: dict[str, Any], ident: str, name: str | None = None) -> dict[str, Any]:
        return {**obj, "uuid": self.key(ident), "name": name or ident}

    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def context(self, snapshot: Snapshot, subject: dict[str, Any]) -> dict[str, Any]:
        """The facts beside the subject that `judge` needs, as the snapshot saw them."""
        return {}

    def judge(self, subject: dict[str, Any], context: dict[str, Any], policy: Policy, now: datetime) -> str | None:
        """The finding's summary if the subject has the known error, else None."""
        raise NotImplementedError

    def since(self, subject: dict[str, Any]) -> str | None:
        """When the subject last changed, for the finding (an API timestamp)."""
        return subject.get("updated_at") or subject.get("created_at")

    def detect(self, snapshot: Snapshot, policy: Policy) -> list[Finding]:
        found = []
        for subject in self.subjects(snapshot).values():
            summary = self.judge(subject, self.context(snapshot, subject), policy, snapshot.now)
            if summary:
                found.append(finding(self.name, subject, summary, "", self.since(subject)))
        return found

    def matches_live(self, live: Live, policy: Policy) -> str | None:
        return self.judge(live.node, live.context, policy, live.now)

    def guard(
        self, subject: dict[str, Any], policy: Policy, now: datetime, conn: Connection, reservations: Reservations
    ) -> None:
        """Subjects are left alone by their own rules (`judge` says what is wrong, `guard` who owns it)."""

    def fields(self, subject: dict[str, Any]) -> dict[str, Any]:
        return {k: subject.get(k) for k in self.kept}

    def settled(self, live: Live) -> bool:
        return True


HAMMERS: dict[str, Hammer] = {}


def hammer(cls: type[Hammer]) -> type[Hammer]:
    """Register a hammer class; its runbook must exist, so no hammer ships without one."""
    instance = cls()
    if cls.name in HAMMERS and type(HAMMERS[cls.name]) is not cls:
        raise ValueError(f"hammer {cls.name!r} registered twice")
    if not instance.runbook.exists():
        raise ValueError(f"hammer {cls.name!r} has no runbook at {instance.runbook}")
    HAMMERS[cls.name] = instance
    return cls


def load() -> dict[str, Hammer]:
    load_plugins(__name__, BUILTIN, "hammersmith.hammers")
    return HAMMERS
