"""Failed-authentication limits, per identity and per client address.

After ``limit`` failures within ``window`` seconds a key is refused until its oldest
failure leaves the window. Memory is bounded: past ``max_keys`` the least recently
failing keys are forgotten first. Each worker process keeps its own counts.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable


class FailureLimiter:
    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds to wait when any key is over its limit, else None."""
        now = self._clock()
        waits = []
        for key in keys:
            times = self._recent(key, now)
            if times is not None and len(times) >= self.limit:
                waits.append(times[0] + self.window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def record(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            times = self._failures.setdefault(key, deque())
            times.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
