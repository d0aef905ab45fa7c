"""Debian's Chromium, driven by Playwright, for the browser tests.

``IDNODE_TEST_CHROMIUM`` names the browser (default /usr/bin/chromium); Playwright never
downloads one of its own. Without it the browser tests skip, saying why.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = os.environ.get("IDNODE_TEST_CHROMIUM", "/usr/bin/chromium")
MISSING = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
NO_BROWSER = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=MISSING)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium; the test skips when there is none."""
    if not Path(CHROMIUM).exists():
        pytest.skip(MISSING)
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()
