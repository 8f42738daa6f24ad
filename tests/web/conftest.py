"""A real browser for the dashboard and status page tests: Debian's chromium, driven by Playwright.

Screenshots are test artefacts, written to `test-artifacts/screenshots/` (or $HAMMERSMITH_ARTIFACTS/screenshots).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("HAMMERSMITH_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    # the sync API runs its own event loop in this thread: start it once per session, stop it with the session
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (no cookies) per test, 1280x800; a failing test leaves its last screen behind."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            screenshot(tab, f"FAILED-{request.node.name}")
        context.close()


def screenshot(tab: Page, name: str) -> Path:
    """Save the whole page as test-artifacts/screenshots/<name>.png and return the path."""
    path = ARTIFACTS / "screenshots" / (re.sub(r"[^\w.-]+", "_", name) + ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(path), full_page=True)
    return path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
