"""A real browser for the page tests: Debian's chromium, driven headless by Playwright.

Playwright never downloads a browser here: ``executable_path`` points at the system
chromium that ``make test`` installs. Without it the tests are skipped, saying why.
JavaScript is switched off in the browser context: the pages must work without it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).exists() else None


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless chromium for the session."""
    executable = _chromium()
    if executable is None:
        pytest.skip("chromium is not installed (run `make chromium` as root to install it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, broker_server) -> Iterator[object]:
    """A fresh browser context (no cookies, JavaScript off) and page on the broker.

    Records every request the page makes, and every dialog (there must be none).
    """
    context = browser.new_context(
        base_url=broker_server.url.replace("127.0.0.1", "localhost"),
        java_script_enabled=False,
        viewport={"width": 1280, "height": 900},
        locale="en-GB",
    )
    context.set_default_timeout(15_000)
    opened = context.new_page()
    opened.requests = []
    opened.dialogs = []
    opened.on("request", lambda request: opened.requests.append(request.url))
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()


@pytest.fixture
def screenshot(page) -> object:
    """Save a full-page screenshot under test-artifacts/browser/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
