"""Waiting in a test for something it can see, instead of sleeping a fixed time.

A fixed sleep is too short on a slow machine (CI machines differ 3-4x in speed) and time
thrown away on a fast one. ``wait_until`` looks again every ``interval`` and returns as soon
as what it looks at is what the test waits for; on timeout it fails, saying what it waited
for and what it saw last.

A sleep stays where time passing is the behaviour under test: a TTL or a window running
out, a client pacing its bytes, a connection kept idle, or a count that must *not* move.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT = 20.0  # seconds: generous, as it only runs out when the test fails anyway
INTERVAL = 0.05  # seconds between looks


def wait_until(
    probe: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    what: str,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """``probe()``'s first value for which ``until`` holds (by default: the first true one).

    ``what`` says what is awaited, for the failure message. An exception in ``ignoring``
    raised by ``probe`` counts as "not yet" (a server not listening yet, say).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except ignoring as exc:
            seen: object = exc
        else:
            if until(value):
                return value
            seen = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}; last seen: {seen!r}")
        time.sleep(interval)
