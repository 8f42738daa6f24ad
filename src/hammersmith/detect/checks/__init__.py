"""The check registry: one module per known error, registered with @check.

Sites add their own through the `hammersmith.checks` entry point group; built-ins are listed
in BUILTIN and loaded the same way as a plugin would be.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect import reservations
from hammersmith.detect.handsoff import hands_off
from hammersmith.plugins import load_plugins

BUILTIN = ("error_teardown", "deploy_failed", "clean_failed", "stuck", "dirty_port", "maintenance_no_reason")


@dataclass(frozen=True)
class Finding:
    """One known error on one node."""

    check: str
    node_uuid: str
    node_name: str
    summary: str
    detail: str = ""
    since: datetime | None = None
    hands_off: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "node": self.node_name,
            "node_uuid": self.node_uuid,
            "summary": self.summary,
            "detail": self.detail,
            "since": self.since.isoformat() if self.since else None,
            "hands_off": self.hands_off,
        }


CheckFunc = Callable[[Snapshot, Policy], Iterator[Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    reads: tuple[str, ...]
    func: CheckFunc
    doc: str


CHECKS: dict[str, Check] = {}


def check(name: str, reads: tuple[str, ...] = ("ironic",)) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check; `reads` names the services it needs complete data from."""

    def register(func: CheckFunc) -> CheckFunc:
        if name in CHECKS and CHECKS[name].func is not func:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = Check(name, reads, func, (func.__doc__ or "").strip().splitlines()[0])
        return func

    return register


def load() -> dict[str, Check]:
    load_plugins(__name__, BUILTIN, "hammersmith.checks")
    return CHECKS


def node_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def finding(check_name: str, node: dict[str, Any], summary: str, detail: str = "", since: str | None = None) -> Finding:
    return Finding(check_name, node["uuid"], node.get("name") or node["uuid"], summary, detail, node_time(since))


def failed_state_check(name: str, state: str, summary: str, doc: str) -> CheckFunc:
    """Register a check for nodes sitting in a failure provision state, reporting Ironic's last_error."""

    def func(snapshot: Snapshot, policy: Policy) -> Iterator[Finding]:
        for node in snapshot.nodes:
            if node["provision_state"] == state:
                yield finding(name, node, summary, node.get("last_error") or "", node.get("provision_updated_at"))

    func.__doc__ = doc
    return check(name)(func)


@dataclass
class Report:
    """Findings of all checks over one snapshot, plus what was left alone and what was not evaluated."""

    findings: list[Finding]
    hands_off: dict[str, str]
    skipped: dict[str, str]


def cross_service() -> dict[str, Any]:
    """The hammers that read beyond Ironic: their known errors have no check of their own, the hammer's detection
    is the one judgement for the report and the action."""
    from hammersmith.react import hammers  # the hammers build on this module

    return {name: h for name, h in hammers.load().items() if set(h.reads) - {"ironic"}}


def between_services(snapshot: Snapshot, policy: Policy, skipped: dict[str, str]) -> list[Finding]:
    """Findings of the cross-service hammers whose services the site has (the others do not apply there)."""
    found: list[Finding] = []
    for name, hammer in cross_service().items():
        if not all(snapshot.offers(s) for s in hammer.reads):
            continue
        unread = [s for s in hammer.reads if not snapshot.complete(s)] + [
            n for n in hammer.listings if snapshot.data.get(n) is None
        ]
        if unread:
            skipped[name] = f"incomplete data from {', '.join(unread)}"
        else:
            found.extend(hammer.detect(snapshot, policy))
    return found


def run(snapshot: Snapshot, policy: Policy) -> Report:
    findings: list[Finding] = []
    skipped: dict[str, str] = {}
    for chk in load().values():
        if not snapshot.complete(*chk.reads):
            skipped[chk.name] = f"incomplete data from {', '.join(s for s in chk.reads if not snapshot.complete(s))}"
            continue
        findings.extend(chk.func(snapshot, policy))
    findings.extend(between_services(snapshot, policy, skipped))
    by_uuid = {n["uuid"]: n for n in snapshot.nodes}
    booked, now = reservations.of(snapshot), snapshot.now

    def why(node: dict[str, Any]) -> str | None:
        return hands_off(node, policy, reservations=booked, now=now)

    left_alone = {n.get("name") or n["uuid"]: reason for n in snapshot.nodes if (reason := why(n))}
    findings = [
        Finding(**{**f.__dict__, "hands_off": why(by_uuid[f.node_uuid]) if f.node_uuid in by_uuid else None})
        for f in findings
    ]
    return Report(sorted(findings, key=lambda f: (f.node_name, f.check)), left_alone, skipped)
