"""The failure limiter: a key is refused once it has ``limit`` failures in the window."""

from __future__ import annotations

from registry.identity.ratelimit import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_refused_at_its_limit_until_the_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    limiter = FailureLimiter(3, 60, clock=clock)
    for _ in range(2):
        limiter.record(["k"])
        clock.now += 10
    assert limiter.retry_after(["k"]) is None
    limiter.record(["k"])  # failures at 1000, 1010, 1020
    assert limiter.retry_after(["k"]) == 40  # the one at 1000 leaves at 1060
    assert limiter.retry_after(["other"]) is None
    clock.now = 1060.5
    assert limiter.retry_after(["k"]) is None
    limiter.record(["k"])  # 1010, 1020, 1060.5 in the window
    assert limiter.retry_after(["k"]) == 10


def test_a_large_limit_costs_no_more_per_check() -> None:
    clock = Clock()
    limiter = FailureLimiter(10_000, 60, clock=clock)
    for _ in range(9_999):
        limiter.record(["k"])
    assert limiter.retry_after(["k"]) is None
    limiter.record(["k"])
    assert limiter.retry_after(["k"]) == 60
