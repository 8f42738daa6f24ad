"""Status posts: the store's publish/resolve/list (each change in the ledger with who did it) and the
`hammersmith status publish|resolve|list` commands, on a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from hammersmith import config
from hammersmith.store import Store, open_store
from tests.conftest import hammersmith


def write_config(directory: Path) -> Path:
    path = directory / "hammersmith.yaml"
    sites = {"lab": {"cloud": "nowhere"}, "uc": {"cloud": "elsewhere"}}
    path.write_text(yaml.safe_dump({"state_dir": str(directory / "state"), "sites": sites}))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    settings = config.load(write_config(tmp_path))
    opened = open_store(settings.effective_store_url, settings.state_dir)
    try:
        yield opened
    finally:
        opened.close()


def test_publish_and_resolve_write_the_ledger_with_who(store: Store) -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    post = store.publish_status("lab", "  Ironic API errors ", "Deploys fail.\nWe are on it.", "down", "alice", now)
    assert (post.site, post.title, post.body, post.impact, post.state) == (
        "lab",
        "Ironic API errors",
        "Deploys fail.\nWe are on it.",
        "down",
        "ongoing",
    )
    assert (post.published_by, post.created_at, post.resolved_at) == ("alice", now, None)
    later = now + timedelta(hours=2)
    resolved = store.resolve_status(post.id, "bob", later)
    assert resolved is not None and (resolved.state, resolved.resolved_at, resolved.updated_at) == (
        "resolved",
        later,
        later,
    )
    again = store.resolve_status(post.id, "carol", later + timedelta(hours=1))
    assert again is not None and again.resolved_at == later  # a second resolve changes nothing
    rows = store.actions(hammer="status")
    assert [(a.kind, a.agent, a.outcome, a.site) for a in reversed(rows)] == [
        ("publish", "alice", "recorded", "lab"),
        ("resolve", "bob", "recorded", "lab"),
    ]
    assert rows[0].params["post"] == post.id and "bob" in (rows[0].reason or "")
    assert store.resolve_status(9999, "bob") is None


def test_bad_impact_or_empty_title_is_refused_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(ValueError, match="impact 'broken'"):
        store.publish_status("lab", "t", "b", "broken", "alice")
    with pytest.raises(ValueError, match="title"):
        store.publish_status("lab", "   ", "b", "info", "alice")
    assert store.status_posts() == [] and store.actions(hammer="status") == []


def test_listing_filters_newest_first(store: Store) -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    old = store.publish_status("lab", "old", "", "maintenance", "a", now - timedelta(days=30))
    store.resolve_status(old.id, "a", now - timedelta(days=29))
    long_running = store.publish_status("lab", "long", "", "degraded", "a", now - timedelta(days=20))
    fresh = store.publish_status("lab", "fresh", "", "info", "a", now - timedelta(hours=1))
    other = store.publish_status("uc", "other site", "", "down", "a", now)
    assert [p.id for p in store.status_posts()] == [other.id, fresh.id, long_running.id, old.id]
    assert [p.id for p in store.status_posts(site="lab")] == [fresh.id, long_running.id, old.id]
    assert [p.id for p in store.status_posts(ongoing_only=True, site="lab")] == [fresh.id, long_running.id]
    # since: what mattered since then, so a post still ongoing from before counts, one resolved before does not
    assert [p.id for p in store.status_posts(site="lab", since=now - timedelta(days=7))] == [fresh.id, long_running.id]
    assert [p.id for p in store.status_posts(limit=2)] == [other.id, fresh.id]


def test_the_commands_publish_list_and_resolve(tmp_path: Path) -> None:
    write_config(tmp_path)
    published = hammersmith(
        "status", "publish", "--site", "lab", "--title", "Deploys failing", "--body", "Ironic errors; on it.",
        "--impact", "down", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    post = json.loads(published.stdout)
    assert (post["site"], post["title"], post["impact"], post["state"]) == ("lab", "Deploys failing", "down", "ongoing")

    table = hammersmith("status", "list", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "Deploys failing" in table.stdout and "Ironic errors; on it." in table.stdout and "ongoing" in table.stdout

    resolved = hammersmith("status", "resolve", str(post["id"]), cwd=tmp_path)
    assert resolved.returncode == 0 and f"resolved #{post['id']}" in resolved.stdout
    assert "no ongoing status posts" in hammersmith("status", "list", cwd=tmp_path).stdout
    listed = json.loads(hammersmith("status", "list", "--all", "--json", cwd=tmp_path).stdout)
    assert [(p["id"], p["state"]) for p in listed] == [(post["id"], "resolved")]
    assert json.loads(hammersmith("status", "list", "--all", "--site", "uc", "--json", cwd=tmp_path).stdout) == []

    missing = hammersmith("status", "resolve", "999", cwd=tmp_path)
    assert missing.returncode == 1 and "no status post 999" in missing.stderr
    bad = hammersmith(
        "status", "publish", "--site", "lab", "--title", "t", "--body", "b", "--impact", "broken", cwd=tmp_path
    )
    assert bad.returncode == 2 and "degraded, down, maintenance, info" in bad.stderr
    unknown_site = hammersmith(
        "status", "publish", "--site", "nope", "--title", "t", "--body", "b", "--impact", "info", cwd=tmp_path
    )
    assert unknown_site.returncode != 0
