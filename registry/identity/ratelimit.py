"""Failed-authentication limits, per identity and per client address, for the whole node.

After ``limit`` failures within ``window`` seconds a key is refused until its oldest
failure leaves the window. The failure times live in memory shared by every worker of
the node (an anonymous shared mapping made before they fork), so spreading guesses over
workers gains nothing. Each key hashes to a slot holding its last ``limit`` failure
times in a ring; memory is fixed. Keys that share a slot share a limit, which errs on
the side of refusing; the hash is salted per node, so nobody can aim for a collision.
Two workers recording at the same instant may overwrite one time: the limit is then
reached one failure later, never earlier.
"""

from __future__ import annotations

import math
import mmap
import time
from collections.abc import Callable, Iterable

TABLE_WORDS = 1 << 20  # 8 MiB of shared memory, whatever the limit


class FailureLimiter:
    def __init__(self, limit: int = 10, window: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock  # CLOCK_MONOTONIC is the same in every process of the machine
        self._width = limit + 1  # the ring's next position, then the times
        slots = 1 << max(4, (TABLE_WORDS // self._width).bit_length() - 1)
        self._mask = slots - 1
        self._map = mmap.mmap(-1, slots * self._width * 8)
        self._words = memoryview(self._map).cast("d")

    def _base(self, key: str) -> int:
        return (hash(key) & self._mask) * self._width

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds to wait when any key is over its limit, else None.

        The ring holds a key's last ``limit`` failure times, oldest at the next write
        position: the key is over its limit exactly when that oldest one is still in the
        window, so one look answers whatever the limit.
        """
        now = self._clock()
        waits = []
        for key in keys:
            base = self._base(key)
            oldest = self._words[base + 1 + int(self._words[base]) % self.limit]
            if oldest > now - self.window:
                waits.append(oldest + self.window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def record(self, keys: Iterable[str]) -> None:
        now = self._clock()
        words = self._words
        for key in keys:
            base = self._base(key)
            position = int(words[base]) % self.limit
            words[base + 1 + position] = now
            words[base] = position + 1
