"""Alertmanager silences (API v2), so nobody is paged for a node or site that is meant to be down."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from hammersmith.errors import HammersmithError


class AlertmanagerError(HammersmithError):
    """Alertmanager could not be reached or refused a request; the message names the URL."""


class Alertmanager:
    """A thin Alertmanager API v2 client: create, read and expire silences."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call; transport failures and HTTP errors become an AlertmanagerError naming the URL."""
        url = f"{self.url}{path}"
        try:
            response = httpx.request(method, url, timeout=self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise AlertmanagerError(
                f"Alertmanager {method} {url} failed: {exc.__class__.__name__}: {exc}",
                hint="check the site's alertmanager_url and that Alertmanager is running",
            ) from exc
        return response

    @staticmethod
    def _fail(response: httpx.Response) -> AlertmanagerError:
        request = response.request
        return AlertmanagerError(
            f"Alertmanager {request.method} {request.url} answered HTTP {response.status_code}: "
            f"{response.text.strip()[:300]}"
        )

    def silence(self, matchers: dict[str, str], starts: datetime, ends: datetime, created_by: str, comment: str) -> str:
        """POST /api/v2/silences (equality matchers); returns the silence ID."""
        if not matchers:
            raise AlertmanagerError(f"refusing to create a silence without matchers on {self.url}")
        body = {
            "matchers": [
                {"name": name, "value": value, "isRegex": False, "isEqual": True} for name, value in matchers.items()
            ],
            "startsAt": _iso(starts),
            "endsAt": _iso(ends),
            "createdBy": created_by,
            "comment": comment,
        }
        response = self._request("POST", "/api/v2/silences", json=body)
        if response.status_code != 200:
            raise self._fail(response)
        return str(response.json()["silenceID"])

    def expire(self, silence_id: str) -> None:
        """DELETE /api/v2/silence/{id}; an already expired or unknown silence is fine (idempotent)."""
        response = self._request("DELETE", f"/api/v2/silence/{silence_id}")
        if response.status_code == 200:
            return
        # Alertmanager answers 500 "already expired" or "silence not found": both mean "not silencing", as wanted
        if response.status_code == 404 or "already expired" in response.text or "not found" in response.text:
            return
        raise self._fail(response)

    def get(self, silence_id: str) -> dict[str, Any]:
        """GET /api/v2/silence/{id}: the silence with its `status.state` (pending, active, expired)."""
        response = self._request("GET", f"/api/v2/silence/{silence_id}")
        if response.status_code != 200:
            raise self._fail(response)
        silence: dict[str, Any] = response.json()
        return silence


def _iso(moment: datetime) -> str:
    """Alertmanager wants RFC 3339; naive datetimes in hammersmith are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def node_matchers(site: str, node_name: str) -> dict[str, str]:
    """The labels hammersmith's node alerts carry."""
    return {"site": site, "node": node_name}


def site_matchers(site: str) -> dict[str, str]:
    """Every alert of a site (a part-time site's offline window)."""
    return {"site": site}
