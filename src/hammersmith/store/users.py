"""Dashboard accounts and their sessions."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session


class UsersMixin:
    """The users half of Store; Store provides the unit-of-work sessions."""

    session: Callable[[], AbstractContextManager[Session]]
