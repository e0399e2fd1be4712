"""A page in Debian's chromium driven by Playwright, for the tests of web pages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


@contextmanager
def chromium_page(shots: Path) -> Iterator:
    """A 1280x900 page with a 30 s default timeout; ``shots`` is created for screenshots."""
    from playwright import sync_api as playwright

    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


def open_page(pg, url: str) -> None:
    """Go to ``url`` and wait until the page's script has loaded what it shows
    (``body[data-ready]``): a test that acts before the listeners are attached races the page."""
    pg.goto(url)
    pg.wait_for_selector("body[data-ready]", state="attached")
