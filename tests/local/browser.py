"""A real headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright
(the ``playwright`` package of the test extra; its own browser downloads are never used).

Tests that need it carry :data:`needs_browser`, which skips them with the reason when the
package or the browser is missing (``apt-get install chromium``; ``make test-browser`` does).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T = TypeVar("T")

WAIT_MS = 10_000  # every Playwright wait, unless a test says otherwise

_MARKS = (
    pytest.mark.browser,
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="the playwright package is not installed (it comes with the [test] extra)",
    ),
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(),
        reason="no chromium browser (apt-get install chromium; make test-browser does)",
    ),
)


def needs_browser(test: T) -> T:
    """Mark ``test`` as a browser test, skipped with the reason where there is none."""
    for mark in _MARKS:
        test = mark(test)  # type: ignore[assignment]  # a mark returns what it decorates
    return test


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A launched headless Chromium (Playwright's ``Browser``), closed at the end."""
    from playwright.async_api import async_playwright  # noqa: PLC0415  (optional dependency)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=LAUNCH_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            await browser.close()
