"""Notifications through Apprise (Slack, e-mail, Matrix, webhooks...): one message per sweep's batch and
per escalation, each with its runbook link; the store remembers what was sent, so nothing repeats.

Apprise URLs carry secrets: they are never logged or shown, only their scheme. Apprise's own log shows whole URLs
(an unparseable one, a webhook's path), so it is silenced here. Messages are plain text: a node's or an alert's name
is sent as written, never read as HTML, Markdown or `:emoji:` by a service that formats.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

import apprise

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import APPRISE_SCHEME, Site
from hammersmith.detect.handsoff import OWN_REASON_PREFIX
from hammersmith.react import runbooks
from hammersmith.react.hammers import Action, Hammer
from hammersmith.store import Store
from hammersmith.store.ledger import stable

if TYPE_CHECKING:
    from hammersmith.react.sweep import Result

log = logging.getLogger(__name__)
logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)  # its messages name URLs, tokens and all

#: what an applied action's outcome must be to be told (refusals and observations are findings' business)
NOTIFIED_OUTCOMES = ("succeeded", "failed", "fixed", "ineffective", "unverified")
#: what holds a subject after an escalation: a node's maintenance, or for another subject the ledger
HELD = {
    True: "The node is in maintenance; nothing will retry it.",
    False: "Nothing will retry it until the fault is gone (fixed by a human).",
}
#: failed deliveries per site since this process started (the exporter's hammersmith_notification_failures_total)
FAILURES: Counter[str] = Counter()


def scheme(url: str) -> str:
    """The only part of an Apprise URL that may be logged: its service (a scheme-less URL is all secret)."""
    match = APPRISE_SCHEME.match(url)
    return match[1].lower() if match else "a URL without a scheme"


def send(site: Site, site_name: str, title: str, body: str) -> bool:
    """Deliver to every configured URL as plain text; a failure is logged by scheme only, counted, and never raised."""
    if not site.notify:
        return False
    client = apprise.Apprise(asset=apprise.AppriseAsset(interpret_emojis=False, interpret_escapes=False))
    unusable = [url for url in site.notify if not client.add(url)]
    sent = bool(client) and bool(client.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))
    if unusable or not sent:
        failed = unusable if sent else site.notify
        log.warning("notification failed for %s", ", ".join(sorted({scheme(url) for url in failed})))
        FAILURES[site_name] += 1
    return sent and not unusable


def runbook(base_url: str, name: str) -> str:
    """The runbook's page on the agent (http.public_url), or "" when none has that name."""
    return f"{base_url}/runbooks/{name}" if name in runbooks.catalogue() else ""


def sweep_batch(store: Store, site: Site, site_name: str, result: Result, base_url: str) -> None:
    """One message: this sweep's actions, plus findings nobody was told about yet."""
    lines = []
    for a in result.actions:
        if a["mode"] == "apply" and a["outcome"] in NOTIFIED_OUTCOMES:
            if store.mark_notified(site_name, f"action:{a['hammer']}:{a['node_uuid']}:{result.started_at.isoformat()}"):
                lines.append(
                    f"- {a['outcome']}: {a['hammer']} {a['kind']} on {a['node']} ({a['reason']}) "
                    f"runbook: {runbook(base_url, a['hammer'])}"
                )
    for v in result.verified:  # earlier actions whose verdict came in this sweep
        if store.mark_notified(site_name, f"verified:{v['action_id']}"):
            lines.append(f"- {v['outcome']}: earlier action #{v['action_id']} on {v['node']}")
    acted = {(a["hammer"], a["node_uuid"]) for a in result.actions if a["outcome"] != "observed"}
    for f in result.findings:
        if (f.check, f.node_uuid) in acted:
            continue
        # "stuck for 61 min" and "... 66 min" are one finding
        if store.mark_notified(site_name, f"finding:{f.check}:{f.node_uuid}:{stable(f.summary)}"):
            lines.append(f"- found: {f.check} on {f.node_name}: {f.summary} runbook: {runbook(base_url, f.check)}")
    if lines:
        send(site, site_name, f"hammersmith [{site_name}]: {len(lines)} new item(s)", "\n".join(lines))


def held(hammer: Hammer, action: Action) -> str:
    """The mark that holds a subject (not a node) a hammer gave up on, until the fault is gone."""
    return f"held:{hammer.name}:{action.node_uuid}"


def forget_resolved(store: Store, site_name: str, result: Result, evaluated: set[str]) -> None:
    """A finding no longer seen by a hammer that ran on complete data is resolved: if it comes back, it is news
    (and a subject given up on is free to be acted on, and given up on, again)."""
    found = {(f.check, f.node_uuid) for f in result.findings}
    keys = []
    for prefix in ("finding:", "held:"):
        for key in store.notification_keys(site_name, prefix):
            _, check, node, *_ = key.split(":", 3)
            if check in evaluated and (check, node) not in found:
                keys.append(key)
    store.forget_notifications(site_name, keys)


def forget_released(store: Store, site_name: str, snap: Snapshot) -> None:
    """An escalated node a human took out of hammersmith's maintenance is released: escalating it again is news.
    Run before the sweep acts, so that a new escalation in this very sweep is told."""
    if not snap.complete("ironic"):
        return
    ours = {
        n["uuid"]
        for n in snap.nodes
        if n.get("maintenance") and (n.get("maintenance_reason") or "").startswith(OWN_REASON_PREFIX)
    }
    keys = [k for k in store.notification_keys(site_name, "escalate:") if k.split(":", 3)[2] not in ours]
    store.forget_notifications(site_name, keys)


def sweep_failed(site: Site, site_name: str, error: str) -> None:
    """A sweep broke after its snapshot: what it did is recorded; say so, every time (each is news)."""
    send(site, site_name, f"hammersmith [{site_name}]: sweep failed", f"{error}\nSee the agent's log and the ledger.")


def escalation(
    store: Store, site: Site, site_name: str, hammer: Hammer, action: Action, reason: str, base_url: str
) -> None:
    if store.mark_notified(site_name, f"escalate:{hammer.name}:{action.node_uuid}:{reason}"):
        send(
            site,
            site_name,
            f"hammersmith [{site_name}]: {hammer.name} gave up on {action.node_name}",
            f"{reason}\n{HELD[hammer.subject == 'node']}\nrunbook: {runbook(base_url, hammer.name)}",
        )


def breaker_opened(store: Store, site: Site, site_name: str, reason: str, opened_at: datetime) -> None:
    if store.mark_notified(site_name, f"breaker:{opened_at.isoformat()}"):
        send(
            site,
            site_name,
            f"hammersmith [{site_name}]: circuit breaker OPEN, nothing is applied",
            f"{reason}\nInvestigate, then: hammersmith breaker reset --site {site_name}",
        )
