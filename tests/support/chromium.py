"""Debian's Chromium, driven by Playwright, for every browser test (the console's, the
console's languages', the cross-site requests').

``IDNODE_TEST_CHROMIUM`` names the browser (default /usr/bin/chromium); Playwright never
downloads one of its own. Without it the browser tests skip, saying why.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = os.environ.get("IDNODE_TEST_CHROMIUM", "/usr/bin/chromium")
MISSING = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
NO_BROWSER = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=MISSING)


@contextlib.contextmanager
def chromium_in() -> Iterator[Callable[[str], Browser]]:
    """Headless Chromium with its own user interface in a language (``in_language("zh-CN")``):
    a file picker's button, a date input, a required field's message, as a user there sees them
    when Debian's chromium-l10n is installed (English without it). Each starts when first asked
    for, under one Playwright; all close on leaving. The test skips when there is no Chromium."""
    if not Path(CHROMIUM).exists():
        pytest.skip(MISSING)
    with sync_playwright() as playwright:
        started: dict[str, Browser] = {}

        def in_language(language: str) -> Browser:
            if language not in started:
                env: dict[str, str | float | bool] = {**os.environ, "LANGUAGE": language.replace("-", "_")}
                # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
                started[language] = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"], env=env
                )
            return started[language]

        try:
            yield in_language
        finally:
            for launched in started.values():
                launched.close()


@contextlib.contextmanager
def chromium(language: str = "en") -> Iterator[Browser]:
    """One headless Chromium, its own user interface in ``language``; the test skips when there is none."""
    with chromium_in() as in_language:
        yield in_language(language)
