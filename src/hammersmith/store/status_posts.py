"""What operators publish on the public status page."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session


class StatusPostsMixin:
    """The status posts half of Store; Store provides the unit-of-work sessions."""

    session: Callable[[], AbstractContextManager[Session]]
