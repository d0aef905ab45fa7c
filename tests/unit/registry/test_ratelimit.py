"""The failure limiter: a key is refused once it has ``limit`` failures in the window."""

from __future__ import annotations

import multiprocessing
import time

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


class SlowPosition:
    """The limiter's shared words, but reading a ring's write position takes ``pause`` seconds:
    a worker descheduled between reading where to write and writing (on a loaded machine)."""

    def __init__(self, words: memoryview[float], pause: float) -> None:
        self.words, self.pause = words, pause

    def __getitem__(self, at: int) -> float:
        value: float = self.words[at]
        if at % 11 == 0:  # a ring's first word (limit 10: eleven words a slot) is its write position
            time.sleep(self.pause)
        return value

    def __setitem__(self, at: int, value: float) -> None:
        self.words[at] = value


def _record(limiter: FailureLimiter, times: int, pause: float) -> None:
    if pause:
        limiter._words = SlowPosition(limiter._words, pause)  # type: ignore[assignment]
    for _ in range(times):
        limiter.record(["k"])


def test_workers_recording_at_once_never_reach_the_limit_early() -> None:
    """A worker that read the write position, then wrote after another had recorded twice, set the
    position back onto a recent failure: the key read as over its limit after 3 failures of 10,
    and stayed so (a refused attempt records nothing) until that failure left the window. The Handle
    protocol fuzzer saw the authentication brake engage far below its limit on a loaded machine."""
    limiter = FailureLimiter(10, 60)
    fork = multiprocessing.get_context("fork")
    slow = fork.Process(target=_record, args=(limiter, 1, 0.3))  # reads the position, then waits
    slow.start()
    time.sleep(0.1)
    fast = fork.Process(target=_record, args=(limiter, 2, 0.0))  # records twice meanwhile
    fast.start()
    for worker in (slow, fast):
        worker.join(10)
        assert worker.exitcode == 0
    assert limiter.retry_after(["k"]) is None  # 3 failures, the limit is 10
    for _ in range(6):
        limiter.record(["k"])
    assert limiter.retry_after(["k"]) is None  # 9
    limiter.record(["k"])
    assert limiter.retry_after(["k"]) is not None  # 10: none was lost either
