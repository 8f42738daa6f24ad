"""Notices to users, end to end: owners' addresses from a real Keystone, messages through Apprise to a real SMTP
server (aiosmtpd on 127.0.0.1), each stored and sent once, previewable through the real command line."""

from __future__ import annotations

import email
import email.policy
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from aiosmtpd.controller import Controller
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from openstack.connection import Connection

from hammersmith.config import Notices
from hammersmith.react import notices
from hammersmith.react.notices import Notice, NoticeFailed
from hammersmith.store import Store, open_store
from hammersmith.store.models import Base
from hammersmith.testbed import keystone
from hammersmith.testbed.ironic import free_port
from tests.conftest import Testbed, hammersmith

SITE = "lab"
SENDER = "ops@testbed.example"
OPERATORS = "operators@testbed.example"
JULY = datetime(2026, 7, 15, 14, 0, tzinfo=UTC)  # Chicago on daylight time: UTC-05:00
JANUARY = datetime(2027, 1, 15, 14, 0, tzinfo=UTC)  # Chicago on standard time: UTC-06:00


# -- a real SMTP server -----------------------------------------------------------------------------------------


@dataclass
class Inbox:
    """What the SMTP server received: one entry per message, with its envelope recipients."""

    port: int
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    def url(self, port: int | None = None) -> str:
        """Apprise's plain SMTP (mailto://, no TLS, no login) to this server, one recipient per message."""
        return f"mailto://127.0.0.1:{port or self.port}?from={SENDER}&to={{email}}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox(free_port())
    server = Controller(box, hostname="127.0.0.1", port=box.port)
    server.start()
    try:
        yield box
    finally:
        server.stop()


# -- a real Keystone: an owner with an e-mail, a project with one, and both without ---------------------------------


@dataclass
class People:
    conn: Connection
    user_id: str
    user_email: str
    project_id: str
    project_email: str
    silent_user_id: str
    silent_project_id: str


@pytest.fixture(scope="module")
def people(keystone_testbed: Testbed) -> Iterator[People]:
    """Users and projects of this module's own (unique names), created and deleted through Keystone's admin."""
    state = keystone_testbed.state
    assert state.auth_url
    conn = keystone.admin(state.auth_url, state.passwords["admin"])
    ident = conn.identity
    tag = secrets.token_hex(4)
    users: list[str] = []
    projects: list[str] = []
    try:
        project = ident.create_project(name=f"exp-{tag}", domain_id="default", email=f"pi+{tag}@lab.example")
        projects.append(project.id)
        projects.append(ident.create_project(name=f"quiet-{tag}", domain_id="default").id)
        user = ident.create_user(name=f"alice-{tag}", domain_id="default", email=f"alice+{tag}@users.example")
        users.append(user.id)
        users.append(ident.create_user(name=f"bob-{tag}", domain_id="default").id)
        yield People(
            conn, users[0], f"alice+{tag}@users.example", projects[0], f"pi+{tag}@lab.example", users[1], projects[1]
        )
    finally:
        for user_id in users:
            ident.delete_user(user_id, ignore_missing=True)
        for project_id in projects:
            ident.delete_project(project_id, ignore_missing=True)
        conn.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'hammersmith.sqlite'}")
    try:
        yield opened
    finally:
        opened.close()


def idle(people: People, key: str = "lease-idle:3f2a", **owner: str | None) -> Notice:
    """A lease idle since a July afternoon, scheduled to end in January."""
    return Notice(
        kind="lease-idle",
        key=key,
        subject="lease experiment-1 (3f2a)",
        user_id=owner.get("user_id", people.user_id),
        project_id=owner.get("project_id", people.project_id),
        values={
            "lease_name": "experiment-1",
            "lease_id": "3f2a",
            "idle_since": JULY,
            "ends_at": JULY.replace(hour=20),
            "end": JANUARY,
        },
    )


def chicago(inbox: Inbox, port: int | None = None) -> Notices:
    return Notices(url=inbox.url(port), timezone="America/Chicago", operators=OPERATORS)


# -- tests ----------------------------------------------------------------------------------------------------


def test_recipients_are_the_owners_and_the_projects_email_in_keystone(people: People) -> None:
    both = idle(people)
    assert notices.recipients(people.conn, both) == [people.user_email, people.project_email]
    quiet = idle(people, user_id=people.silent_user_id, project_id=people.silent_project_id)
    assert notices.recipients(people.conn, quiet) == []
    # a deleted owner or project is no error: what is left is told
    gone = idle(people, user_id="0" * 32, project_id=people.project_id)
    assert notices.recipients(people.conn, gone) == [people.project_email]
    assert notices.recipients(people.conn, idle(people, user_id=None, project_id=None)) == []


def test_send_delivers_one_message_per_recipient_once_in_utc_and_the_sites_zone(
    people: People, inbox: Inbox, store: Store
) -> None:
    config = chicago(inbox)
    notice = idle(people)
    row = notices.send(store, SITE, people.conn, config, notice, action_id=7)
    assert row.status == "sent" and row.sent_at is not None and row.error is None and row.action_id == 7
    assert notices.sent_at(store, SITE, notice.key) == row.sent_at
    assert sorted(to for to, _ in inbox.messages) == sorted([[people.user_email], [people.project_email]])

    title, body = notices.render(notice, config)
    assert title == "Your lease experiment-1 is idle and will be ended at 2026-07-15 20:00 UTC"
    for _, message in inbox.messages:
        assert message["Subject"] == title and message["From"] == SENDER
        assert message.get_content_type() == "text/plain"
        text = message.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
        # July is daylight time in Chicago, January standard time: each with its own offset
        assert "2026-07-15 14:00 UTC = 2026-07-15 09:00 CDT (America/Chicago, UTC-05:00)" in text
        assert "2027-01-15 14:00 UTC = 2027-01-15 08:00 CST (America/Chicago, UTC-06:00)" in text
        assert f"reply to {OPERATORS}" in text
        assert text.strip() == body.strip()
    assert row.title == title and row.body == body and row.recipients == [people.user_email, people.project_email]

    again = notices.send(store, SITE, people.conn, config, notice)
    assert len(inbox.messages) == 2  # nothing sent twice
    assert again == row


def test_preview_stores_a_pending_notice_the_cli_lists(
    people: People, inbox: Inbox, store: Store, tmp_path: Path
) -> None:
    config = chicago(inbox)
    notice = idle(people, key="lease-idle:preview")
    first = notices.preview(store, SITE, people.conn, config, notice)
    assert notices.preview(store, SITE, people.conn, config, notice).id == first.id  # one row per key
    assert first.status == "pending" and first.sent_at is None
    assert first.recipients == [people.user_email, people.project_email]
    assert notices.pending(store) == [first] and notices.pending(store, "elsewhere") == []
    assert notices.sent_at(store, SITE, notice.key) is None and inbox.messages == []

    path = tmp_path / "hammersmith.yaml"
    raw = {"state_dir": str(tmp_path), "store_url": str(store.engine.url), "sites": {SITE: {"cloud": "nowhere"}}}
    path.write_text(yaml.safe_dump(raw))
    cli = ("--config", str(path), "notices")
    listed = hammersmith(*cli, "--pending", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [shown] = json.loads(listed.stdout)
    assert (shown["key"], shown["kind"], shown["status"]) == (notice.key, "lease-idle", "pending")
    assert shown["recipients"] == [people.user_email, people.project_email] and shown["sent_at"] is None

    sent = notices.send(store, SITE, people.conn, config, notice)
    assert sent.id == first.id and sent.status == "sent" and len(inbox.messages) == 2
    assert json.loads(hammersmith(*cli, "--pending", "--json", cwd=tmp_path).stdout) == []
    assert json.loads(hammersmith(*cli, "--site", "elsewhere", "--json", cwd=tmp_path).stdout) == []
    table = hammersmith(*cli, "--site", SITE, cwd=tmp_path)
    assert table.returncode == 0 and "lease experiment-1 (3f2a)" in table.stdout and "sent" in table.stdout


def test_an_owner_without_email_is_stored_no_recipient_and_raises(people: People, inbox: Inbox, store: Store) -> None:
    notice = idle(people, key="lease-idle:quiet", user_id=people.silent_user_id, project_id=people.silent_project_id)
    with pytest.raises(NoticeFailed, match="no e-mail") as failed:
        notices.send(store, SITE, people.conn, chicago(inbox), notice)
    row = store.notice(SITE, notice.key)
    assert row is not None and row == failed.value.row
    assert row.status == "no-recipient" and row.recipients == [] and row.sent_at is None
    assert inbox.messages == [] and notices.sent_at(store, SITE, notice.key) is None


def test_no_url_is_a_stored_failure(people: People, store: Store) -> None:
    notice = idle(people, key="lease-idle:no-url")
    with pytest.raises(NoticeFailed, match="notices.url is not set"):
        notices.send(store, SITE, people.conn, Notices(), notice)
    row = store.notice(SITE, notice.key)
    assert row is not None and row.status == "failed" and row.recipients == [people.user_email, people.project_email]


def test_an_unreachable_server_is_a_failure_that_never_shows_the_url_and_is_retried(
    people: People, inbox: Inbox, store: Store
) -> None:
    """The URL is a secret (it may hold an SMTP password): the stored error and the exception name its scheme only."""
    dead = free_port()
    secret = "s3cret-" + secrets.token_hex(4)
    url = f"mailto://mailer:{secret}@127.0.0.1:{dead}?from={SENDER}&to={{email}}&mode=insecure"
    notice = idle(people, key="lease-idle:unreachable")
    with pytest.raises(NoticeFailed) as failed:
        notices.send(store, SITE, people.conn, Notices(url=url, timezone="America/Chicago"), notice)
    row = store.notice(SITE, notice.key)
    assert row is not None and row.status == "failed" and row.sent_at is None and row.error
    for shown in (row.error, str(failed.value)):
        assert "mailto" in shown and secret not in shown and str(dead) not in shown and "127.0.0.1" not in shown
    assert inbox.messages == []

    # a failed notice is not "sent": once the server answers, it goes (once)
    row = notices.send(store, SITE, people.conn, chicago(inbox), notice)
    assert row.status == "sent" and row.error is None and len(inbox.messages) == 2


def test_every_kind_renders_plain_text_in_both_zones() -> None:
    name = "<b>x</b>\nBcc: evil@x.example"
    paris = Notices(timezone="Europe/Paris")
    values = {
        "lease-idle": {"lease_name": name, "lease_id": "1", "idle_since": JULY, "ends_at": JULY, "end": JANUARY},
        "lease-ended": {"lease_name": name, "lease_id": "1", "ended_at": JANUARY, "reason": "it was idle"},
        "lease-starts": {"lease_name": name, "lease_id": "1", "start": JANUARY, "end": JANUARY},
    }
    assert set(values) == set(notices.KINDS)
    for kind, given in values.items():
        title, body = notices.render(Notice(kind, f"{kind}:1", "lease x (1)", None, None, given), paris)
        # plain text: nothing escaped; a name's line break cannot end the title (or add a mail header)
        assert title.startswith("Your lease <b>x</b> Bcc: evil@x.example ") and "&lt;" not in body
        assert "2027-01-15 14:00 UTC = 2027-01-15 15:00 CET (Europe/Paris, UTC+01:00)" in body
        assert "write to your testbed's operators" in body
    ended = values["lease-ended"]
    _, utc_only = notices.render(Notice("lease-ended", "k", "s", None, None, ended), Notices())
    assert "  2027-01-15 14:00 UTC\nbecause it was idle." in utc_only  # UTC sites: one time, no repeat
    without_reason = {name: value for name, value in ended.items() if name != "reason"}
    with pytest.raises(jinja2.UndefinedError, match="reason"):  # never a blank in a user's mail
        notices.render(Notice("lease-ended", "k", "s", None, None, without_reason), paris)


# -- the store, on both backends ------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hammersmith.sqlite'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"notices_{secrets.token_hex(4)}")
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()


def test_a_key_is_claimed_by_one_sender_on_both_backends(any_store: Store) -> None:
    with any_store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    claim = {"site": SITE, "key": "lease-ended:9", "kind": "lease-ended", "subject": "lease y (9)"}
    pending = any_store.preview_notice(**claim, recipients=["a@x.example"], title="t", body="b")
    again = any_store.preview_notice(**claim, recipients=["b@x.example"], title="t2", body="b2", action_id=3)
    assert again.id == pending.id and again.recipients == ["b@x.example"] and again.action_id == 3  # refreshed
    row, mine = any_store.claim_notice(**claim)
    assert mine and row.status == "sending"
    row, theirs = any_store.claim_notice(**claim)
    assert not theirs and row.status == "sending"  # another sender holds it: not sent twice
    done = any_store.finish_notice(
        site=SITE,
        key=claim["key"],
        status="sent",
        recipients=["b@x.example"],
        title="t2",
        body="b2",
        error=None,
        sent_at=JULY,
    )
    assert done.status == "sent" and done.sent_at == JULY and notices.sent_at(any_store, SITE, claim["key"]) == JULY
    assert not any_store.claim_notice(**claim)[1]
    assert any_store.preview_notice(**claim, recipients=[], title="x", body="x").status == "sent"  # kept as sent
    assert notices.pending(any_store) == [] and [r.key for r in any_store.notices(site=SITE)] == [claim["key"]]
