"""Notices to users (a lease's owner): who they are comes from Keystone, what they are told from a template per kind,
and each notice is stored before and after it goes, so it is previewable and sent once.

A template (notice_templates/<kind>.txt.j2) renders plain text: its first line is the title, the rest the body. Every
datetime it prints is shown in UTC and in the site's time zone with its offset, so a user in Chicago reads their own
clock in July and in January alike. The Apprise URL is a secret: errors and logs name only its scheme.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import apprise
import jinja2
from openstack.connection import Connection
from openstack.exceptions import NotFoundException, SDKException

from hammersmith.config import Notices
from hammersmith.errors import HammersmithError
from hammersmith.react.notify import scheme
from hammersmith.store import Store
from hammersmith.store.models import NoticeRow

__all__ = ["KINDS", "Notice", "NoticeFailed", "pending", "preview", "recipients", "render", "send", "sent_at"]

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "notice_templates"
#: the kinds shipped: one template each (names starting with "_" are parts they include)
KINDS = tuple(sorted(p.name.removesuffix(".txt.j2") for p in TEMPLATES.glob("[!_]*.txt.j2")))
PLACEHOLDER = "{email}"


@dataclass(frozen=True)
class Notice:
    """One thing to tell a user; `key` makes it once-only per site (e.g. "lease-idle:<lease id>")."""

    kind: str
    key: str
    subject: str
    user_id: str | None
    project_id: str | None
    values: dict[str, Any]


class NoticeFailed(HammersmithError):
    """Nothing (or not everything) reached the user; raised after the notice is stored, so the ledger can say so."""

    def __init__(self, message: str, row: NoticeRow) -> None:
        super().__init__(message, hint="see `hammersmith notices`; check the site's notices.url and Keystone e-mails")
        self.row = row


# -- who ------------------------------------------------------------------------------------------------------


def _email(conn: Connection, kind: str, ident: str | None) -> str | None:
    """The `email` Keystone keeps on a user (a field) or a project (an extra attribute); None when it has none."""
    if not ident:
        return None
    try:
        found = conn.identity.get_user(ident) if kind == "user" else conn.identity.get_project(ident)
    except NotFoundException:
        return None
    address = found.to_dict().get("email")
    return address.strip() if isinstance(address, str) and address.strip() else None


def recipients(conn: Connection, notice: Notice) -> list[str]:
    """The owner's and the project's e-mail addresses in Keystone, once each; a deleted user or project adds none."""
    found: dict[str, str] = {}
    for kind, ident in (("user", notice.user_id), ("project", notice.project_id)):
        address = _email(conn, kind, ident)
        if address:
            found.setdefault(address.lower(), address)
    return list(found.values())


# -- what -----------------------------------------------------------------------------------------------------


def utc(moment: datetime) -> str:
    """The short form, for titles."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} in a notice: pass an aware UTC one")
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def shown(moment: datetime, zone: str) -> str:
    """A time in UTC and, unless the zone is UTC, in the zone with its offset that day (DST included)."""
    utc_text = utc(moment)
    local = moment.astimezone(ZoneInfo(zone))
    offset = local.utcoffset()
    if zone == "UTC" or offset is None:
        return utc_text
    sign, minutes = ("-" if offset.total_seconds() < 0 else "+"), abs(int(offset.total_seconds())) // 60
    hours = f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{utc_text} = {local:%Y-%m-%d %H:%M} {local.tzname()} ({zone}, {hours})"


def _printed(value: Any, zone: str) -> Any:
    """What `{{ value }}` prints: a time in both zones; a text on one line (a lease's name must not end the title)."""
    if isinstance(value, datetime):
        return shown(value, zone)
    return " ".join(value.splitlines()) if isinstance(value, str) else value


@functools.cache
def _environment(zone: str) -> jinja2.Environment:
    """Plain text (no escaping); a variable a template names but the notice lacks is an error, not a blank."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=lambda value: _printed(value, zone),
    )
    env.filters["utc"] = utc
    return env


def render(notice: Notice, notices_config: Notices) -> tuple[str, str]:
    """(title, body): the template's first line, and the rest."""
    if notice.kind not in KINDS:
        raise ValueError(f"no notice template {notice.kind!r}; known: {', '.join(KINDS)}")
    template = _environment(notices_config.timezone).get_template(f"{notice.kind}.txt.j2")
    text = template.render({**notice.values, "operators": notices_config.operators})
    title, _, body = text.strip().partition("\n")
    return title.strip(), body.strip() + "\n"


# -- stored, sent ---------------------------------------------------------------------------------------------


def sent_at(store: Store, site: str, key: str) -> datetime | None:
    row = store.notice(site, key)
    return row.sent_at if row is not None and row.status == "sent" else None


def pending(store: Store, site: str | None = None) -> list[NoticeRow]:
    """Notices previewed and not sent (what an observe-mode hammer would have told users)."""
    return store.notices(site=site, status="pending")


def _who(conn: Connection, notice: Notice) -> tuple[list[str], str | None]:
    """The recipients, or none and why: Keystone may be down or refuse this account."""
    try:
        return recipients(conn, notice), None
    except SDKException as exc:
        words = str(exc).strip().splitlines()
        return [], f"Keystone: {words[0] if words else type(exc).__name__}"


def preview(
    store: Store, site: str, conn: Connection, notices_config: Notices, notice: Notice, action_id: int | None = None
) -> NoticeRow:
    """Store what would be sent, and to whom, without sending (one row per key however often it is previewed)."""
    to, error = _who(conn, notice)
    title, body = render(notice, notices_config)
    return store.preview_notice(
        site=site,
        key=notice.key,
        kind=notice.kind,
        subject=notice.subject,
        recipients=to,
        title=title,
        body=body,
        error=error,
        action_id=action_id,
    )


def _deliver(url: str, address: str, title: str, body: str) -> bool:
    """One plain-text message to one address; only the {email} placeholder is filled (the URL may hold braces)."""
    client = apprise.Apprise(asset=apprise.AppriseAsset(interpret_emojis=False, interpret_escapes=False))
    if not client.add(url.replace(PLACEHOLDER, quote(address, safe=""))):
        return False
    return bool(client.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))


def _attempt(url: str | None, to: list[str], title: str, body: str) -> tuple[str, str | None, datetime | None]:
    """(status, error, sent_at) of delivering to every recipient; the error names the URL's scheme only."""
    if not to:
        return "no-recipient", "Keystone has no e-mail for the user or the project", None
    if url is None:
        return "failed", "notices.url is not set for this site", None
    failed = [address for address in to if not _deliver(url, address, title, body)]
    if failed:
        return "failed", f"delivery through {scheme(url)} failed for {', '.join(failed)}", None
    return "sent", None, datetime.now(UTC)


def send(
    store: Store, site: str, conn: Connection, notices_config: Notices, notice: Notice, action_id: int | None = None
) -> NoticeRow:
    """Tell the user once: a sent key returns its row and sends nothing; otherwise deliver, store, and raise
    NoticeFailed (after storing) if it did not reach every recipient."""
    title, body = render(notice, notices_config)  # a template error is a bug: raise it before claiming the key
    row, claimed = store.claim_notice(
        site=site, key=notice.key, kind=notice.kind, subject=notice.subject, action_id=action_id
    )
    if not claimed:
        return row  # sent already, or another sender holds it right now
    to, error = _who(conn, notice)
    status, when = "failed", None
    try:
        if error is None:
            status, error, when = _attempt(notices_config.url, to, title, body)
    except Exception as exc:  # stored and raised as a failure; Apprise's own words could quote the URL
        error = f"{type(exc).__name__} while delivering through {scheme(notices_config.url or '')}"
    row = store.finish_notice(
        site=site, key=notice.key, status=status, recipients=to, title=title, body=body, error=error, sent_at=when
    )
    if status != "sent":
        log.warning("notice %s at %s not sent: %s", notice.key, site, status)
        raise NoticeFailed(f"notice {notice.key} at {site}: {error}", row)
    return row
