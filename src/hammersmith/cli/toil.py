"""`hammersmith toil`: which known error to automate next, from hammersmith's own records."""

from __future__ import annotations


def toil() -> None:
    """Rank every known error by the time automating it saves (the xkcd five-year budget)."""
