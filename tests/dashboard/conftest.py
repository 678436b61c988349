"""Browser fixtures for the dashboard tests, and the reference reading of what the page must show.

The browser is Debian's chromium driven by the `playwright` package (its wheel carries the driver;
no browser download). Missing chromium fails under CI, naming the apt package, and skips elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("PRIVAFLOW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        _missing("chromium not found: install it with `apt-get update && apt-get install -y chromium` "
                 "(or point PRIVAFLOW_CHROMIUM at a Chromium binary)")
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    # module, not session: Playwright's sync API keeps an event loop running in this thread while
    # it is open, which would break every later test that calls asyncio.run()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is missing: `.venv/bin/pip install playwright` (dev dependency; "
                 "`playwright install` is not needed, Debian's chromium is used)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.errors = errors  # type: ignore[attr-defined]
    # everything the page loads must come from the server under test: no CDN, no font service
    pg.outside_requests = []  # type: ignore[attr-defined]
    pg.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:"))
          else pg.outside_requests.append(r.url))  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()
