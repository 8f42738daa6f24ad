"""The agent serves the runbooks: GET /runbooks and /runbooks/<name>, nothing outside them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.react import runbooks
from hammersmith.web.app import create_app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(Exporter(Telemetry(["lab"]), collectors={}, prime=False)))


def test_index_lists_every_runbook(client: TestClient) -> None:
    page = client.get("/runbooks")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in runbooks.catalogue():
        assert f'href="/runbooks/{name}"' in page.text
    assert "<script" not in page.text and "http" not in page.text.split("<body>")[1]  # no external assets


def test_a_page_with_its_links_rewritten(client: TestClient) -> None:
    page = client.get("/runbooks/IronicNodeError")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<h1>IronicNodeError</h1>" in page.text and "<h2>Possible causes</h2>" in page.text
    assert 'href="/runbooks/error-resetter"' in page.text and 'href="/runbooks/OpenStackServiceDown"' in page.text
    assert '.md"' not in page.text and "critical" in page.text
    hammer = client.get("/runbooks/error-resetter")
    assert hammer.status_code == 200 and 'href="/runbooks/IronicNodeError"' in hammer.text


@pytest.mark.parametrize(
    "path",
    [
        "/runbooks/..%2F..%2Fetc%2Fpasswd",
        "/runbooks/..%2f..%2fetc%2fpasswd",
        "/runbooks/%2e%2e/%2e%2e/etc/passwd",
        "/runbooks/.hidden",
        "/runbooks/__init__",
        "/runbooks/__init__.py",
        "/runbooks/IronicNodeError.md",
        "/runbooks/IronicNodeError%2F..%2Ferror-resetter",
        "/runbooks/IronicNodeError%00",
        "/runbooks/a%5Cb",
        "/runbooks/",
        "/runbooks/NoSuchRunbook",
    ],
)
def test_traversal_and_unknown_names_are_a_bare_404(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 404 and page.text == "Not Found"
