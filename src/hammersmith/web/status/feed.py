"""The status page as an Atom 1.0 feed (RFC 4287): operators' posts and the sites' state changes, newest first.

Built with ElementTree, so every text is escaped as XML; the feed has no author but "the status page", never a
person's name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

from hammersmith.web.status import health
from hammersmith.web.status.data import StatusPage, entry_id

ATOM = "http://www.w3.org/2005/Atom"
#: entries in the feed at most (a reader polls; the history bar has the rest)
ENTRIES = 100


def render(page: StatusPage) -> bytes:
    ET.register_namespace("", ATOM)
    feed = ET.Element(_q("feed"))
    base = page.base_url
    _text(feed, "id", entry_id(base, "feed"))
    _text(feed, "title", "Testbed status")
    author = ET.SubElement(feed, _q("author"))
    _text(author, "name", "hammersmith status page")
    ET.SubElement(feed, _q("link"), rel="self", type="application/atom+xml", href=f"{base}/status.atom")
    ET.SubElement(feed, _q("link"), rel="alternate", type="text/html", href=f"{base}/status")
    entries: list[tuple[datetime, str, str, str, datetime | None]] = []
    for post in page.feed_posts:
        title = f"{post.site}: {post.title}" + (" (resolved)" if not post.ongoing else "")
        body = post.body or post.title
        when = f"Impact: {post.impact}. Published {_stamp(post.created_at)}"
        when += f", resolved {_stamp(post.resolved_at)}." if post.resolved_at else ", ongoing."
        entries.append(
            (post.updated_at, entry_id(base, f"post-{post.id}"), title, f"{body}\n\n{when}", post.created_at)
        )
    for site in page.sites:
        for change in site.changes:
            label = health.LABELS[change.state]
            text = (
                f"Site {change.site} is {label.lower()} since {_stamp(change.at)} "
                f"(was {health.LABELS[change.previous].lower()}), as the automatic checks judge it."
            )
            key = f"change-{change.site}-{change.at.isoformat()}"
            entries.append((change.at, entry_id(base, key), f"{change.site}: {label}", text, change.at))
    entries.sort(key=lambda e: e[0], reverse=True)
    entries = entries[:ENTRIES]
    _text(feed, "updated", (entries[0][0] if entries else page.generated_at).isoformat())
    for updated, ident, title, content, published in entries:
        entry = ET.SubElement(feed, _q("entry"))
        _text(entry, "id", ident)
        _text(entry, "title", title)
        _text(entry, "updated", updated.isoformat())
        if published is not None:
            _text(entry, "published", published.isoformat())
        ET.SubElement(entry, _q("link"), rel="alternate", type="text/html", href=f"{base}/status")
        content_el = _text(entry, "content", content)
        content_el.set("type", "text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _q(tag: str) -> str:
    return f"{{{ATOM}}}{tag}"


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, _q(tag))
    element.text = text
    return element


def _stamp(when: datetime | None) -> str:
    return "" if when is None else when.strftime("%Y-%m-%d %H:%M UTC")
