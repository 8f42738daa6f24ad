"""Silences against a real Alertmanager: created active, expired, expired again without complaint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hammersmith.errors import HammersmithError
from hammersmith.maintenance.silences import Alertmanager, node_matchers, site_matchers
from hammersmith.testbed.ironic import free_port
from hammersmith.testbed.prometheus import Alertmanager as AlertmanagerServer
from hammersmith.testbed.prometheus import missing_binaries

AM_CONFIG = """\
route:
  receiver: blackhole
receivers:
  - name: blackhole
"""


@pytest.mark.skipif("alertmanager" in missing_binaries(), reason="alertmanager is not installed")
def test_a_silence_is_active_then_expired_and_expiring_twice_is_fine(tmp_path: Path) -> None:
    with AlertmanagerServer(tmp_path / "am") as server:
        server.start(AM_CONFIG)
        client = Alertmanager(server.url)
        now = datetime.now(UTC)
        silence_id = client.silence(
            node_matchers("uc", "node-01"), now, now + timedelta(hours=2), "alice", "DIMM swap [T-42]"
        )
        silence = client.get(silence_id)
        assert silence["status"]["state"] == "active"
        assert {(m["name"], m["value"], m["isEqual"]) for m in silence["matchers"]} == {
            ("site", "uc", True),
            ("node", "node-01", True),
        }
        assert silence["createdBy"] == "alice"
        assert silence["comment"] == "DIMM swap [T-42]"

        client.expire(silence_id)
        assert client.get(silence_id)["status"]["state"] == "expired"
        client.expire(silence_id)  # idempotent
        assert client.get(silence_id)["status"]["state"] == "expired"
        client.expire("00000000-0000-0000-0000-000000000000")  # unknown: nothing to expire

        site_id = client.silence(site_matchers("uc"), now, now + timedelta(minutes=5), "bob", "offline window")
        assert client.get(site_id)["matchers"] == [{"name": "site", "value": "uc", "isRegex": False, "isEqual": True}]
        client.expire(site_id)


def test_an_unreachable_alertmanager_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = Alertmanager(url, timeout=2.0)
    now = datetime.now(UTC)
    with pytest.raises(HammersmithError, match=f"Alertmanager POST {url}/api/v2/silences failed"):
        client.silence(site_matchers("uc"), now, now + timedelta(hours=1), "alice", "why")
    with pytest.raises(HammersmithError, match=url):
        client.expire("0000")
