"""tests.support.poll, the integration tests' wait: it returns once the awaited value shows,
and when it never does, the failure names what was awaited and the last value seen."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.support.poll import wait_until


def test_returns_the_first_value_that_holds_without_waiting_longer() -> None:
    counter = itertools.count()
    started = time.monotonic()
    assert wait_until(lambda: next(counter), lambda n: n >= 3, what="three", interval=0.01) == 3
    assert time.monotonic() - started < 1.0


def test_a_timeout_says_what_was_awaited_and_what_was_seen_last() -> None:
    counter = itertools.count()
    with pytest.raises(AssertionError, match=r"waited 0.2 s for the count to reach 1000; last seen: \d+$"):
        wait_until(lambda: next(counter), lambda n: n >= 1000, what="the count to reach 1000", timeout=0.2)


def test_an_ignored_exception_is_not_yet_and_is_shown_if_it_lasts() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("not listening yet")

    with pytest.raises(AssertionError, match="last seen: ConnectionRefusedError"):
        wait_until(refused, what="a listener", timeout=0.1, ignoring=(OSError,))
    with pytest.raises(ConnectionRefusedError):  # one not ignored is the test's failure at once
        wait_until(refused, what="a listener", timeout=5.0)
