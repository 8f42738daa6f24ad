"""Dashboard accounts and their sessions.

Passwords are bcrypt hashes; a session is a random token of which only the SHA-256 is stored, so neither a copy of
the database nor its backups let anyone log in. Adding and removing an account is written to the ledger.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import bcrypt
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hammersmith.errors import HammersmithError
from hammersmith.store.ledger import _now, human_act
from hammersmith.store.models import Action, User, WebSession

ROLES = ("viewer", "operator")
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD = 8
#: bcrypt reads 72 bytes at most, and bcrypt 5 refuses more rather than ignore the rest silently
MAX_PASSWORD_BYTES = 72
#: the ledger's site for what is not any one site's: accounts are the agent's
LEDGER_SITE = "*"


class UserError(HammersmithError):
    """A bad name, role or password, a name taken, or no such user: said in words an operator can act on."""


@dataclass(frozen=True)
class UserRow:
    """An account as read back (never its hash)."""

    id: int
    name: str
    role: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: User) -> UserRow:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def validate_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise UserError(
            f"{name!r} is not a valid user name", hint="use 1 to 64 characters: letters, digits and . _ @ -"
        )


def validate_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"{role!r} is not a role", hint=f"use one of: {', '.join(ROLES)}")


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise UserError(f"the password is too long: bcrypt reads at most {MAX_PASSWORD_BYTES} bytes")


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


@functools.cache
def decoy_hash() -> bytes:
    """A hash of nothing anyone knows, at the same cost as real ones: an unknown name costs a check too."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt())


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ledger_row(name: str, kind: str, by: str, reason: str, params: dict[str, str], now: datetime) -> Action:
    """An account change is a human's act on the agent: one ledger row, hammer "user"."""
    return human_act(site=LEDGER_SITE, hammer="user", subject=name, kind=kind, by=by, reason=reason, now=now,
                     params=params)  # fmt: skip


class UsersMixin:
    """The users half of Store; Store provides the unit-of-work sessions."""

    session: Callable[[], AbstractContextManager[Session]]

    def add_user(self, name: str, password: str, role: str, *, by: str = "", now: datetime | None = None) -> UserRow:
        """A new account (UserError if the name is taken or anything is invalid); ledger row by `by`."""
        validate_name(name)
        validate_role(role)
        validate_password(password)
        now = _now(now)
        hashed = _hash(password)  # before the transaction: 0.2 s of bcrypt must not hold a write lock
        row = User(name=name, password_hash=hashed, role=role, created_at=now, updated_at=now)
        try:
            with self.session() as session:
                session.add(row)
                session.flush()
                added = UserRow.of(row)
                reason = f"{by or 'someone'} added {role} {name}"
                session.add(_ledger_row(name, "user-add", by, reason, {"role": role}, now))
        except IntegrityError:
            raise UserError(
                f"a user named {name!r} exists already", hint=f"use `hammersmith user passwd {name}`"
            ) from None
        return added

    def set_password(self, name: str, password: str, *, by: str = "", now: datetime | None = None) -> bool:
        """A new password (False if no such user); the user's sessions end, wherever they are logged in."""
        validate_password(password)
        now = _now(now)
        hashed = _hash(password)
        with self.session() as session:
            row = session.scalar(select(User).where(User.name == name))
            if row is None:
                return False
            row.password_hash, row.updated_at = hashed, now
            session.execute(delete(WebSession).where(WebSession.user_id == row.id))
            reason = f"{by or 'someone'} set a new password for {name}"
            session.add(_ledger_row(name, "user-passwd", by, reason, {"role": row.role}, now))
        return True

    def remove_user(self, name: str, *, by: str = "", now: datetime | None = None) -> bool:
        """Delete the account and its sessions (False if there was none); ledger row by `by`."""
        now = _now(now)
        with self.session() as session:
            row = session.scalar(select(User).where(User.name == name))
            if row is None:
                return False
            session.execute(delete(WebSession).where(WebSession.user_id == row.id))
            session.delete(row)
            reason = f"{by or 'someone'} removed {row.role} {name}"
            session.add(_ledger_row(name, "user-remove", by, reason, {"role": row.role}, now))
        return True

    def user(self, name: str) -> UserRow | None:
        with self.session() as session:
            row = session.scalar(select(User).where(User.name == name))
            return UserRow.of(row) if row is not None else None

    def users(self) -> list[UserRow]:
        with self.session() as session:
            return [UserRow.of(row) for row in session.scalars(select(User).order_by(User.name))]

    def check_password(self, name: str, password: str) -> UserRow | None:
        """The account if the password is right, else None; an unknown or malformed name costs the same bcrypt
        check (against a decoy hash), so the time taken does not tell which names exist. Slow by design: call it
        off the event loop."""
        with self.session() as session:
            row = session.scalar(select(User).where(User.name == name)) if NAME.fullmatch(name) else None
            found = UserRow.of(row) if row is not None else None
            hashed = row.password_hash.encode() if row is not None else decoy_hash()
        secret = password.encode()[:MAX_PASSWORD_BYTES]
        try:
            ok = bcrypt.checkpw(secret, hashed)
        except ValueError:  # a stored hash that is not bcrypt's: no login, not a crash
            ok = False
        too_long = len(password.encode()) > MAX_PASSWORD_BYTES  # checked after the work: same time either way
        return found if ok and found is not None and not too_long else None

    def create_session(self, user_id: int, ttl: timedelta, now: datetime | None = None) -> tuple[str, str]:
        """A new session: (token for the cookie, CSRF token for the forms). Expired sessions are purged here, so
        the table holds the live ones and those of the last `ttl`, never years of logins."""
        now = _now(now)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.session() as session:
            session.execute(delete(WebSession).where(WebSession.expires_at <= now))
            session.add(
                WebSession(
                    token_hash=_token_hash(token),
                    user_id=user_id,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return token, csrf

    def session_user(self, token: str, now: datetime | None = None) -> tuple[UserRow, str] | None:
        """The session's account and CSRF token, or None if the token is unknown or the session has expired."""
        query = (
            select(User, WebSession.csrf_token)
            .join(WebSession, WebSession.user_id == User.id)
            .where(WebSession.token_hash == _token_hash(token), WebSession.expires_at > _now(now))
        )
        with self.session() as session:
            found = session.execute(query).first()
            return (UserRow.of(found[0]), found[1]) if found is not None else None

    def delete_session(self, token: str, now: datetime | None = None) -> None:
        """Log out: the session is gone (and any expired ones with it)."""
        with self.session() as session:
            session.execute(
                delete(WebSession).where(
                    (WebSession.token_hash == _token_hash(token)) | (WebSession.expires_at <= _now(now))
                )
            )
