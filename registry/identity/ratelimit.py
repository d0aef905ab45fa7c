"""Failed-authentication limits, per identity and per client address, for the whole node.

After ``limit`` failures within ``window`` seconds a key is refused until its oldest
failure leaves the window. The failure times live in memory shared by every worker of
the node (an anonymous shared mapping made before they fork), so spreading guesses over
workers gains nothing. Each key hashes to a slot holding its last ``limit`` failure
times in a ring; memory is fixed. Keys that share a slot share a limit, which errs on
the side of refusing; the hash is salted per node, so nobody can aim for a collision.

Recording is a read (where to write) then two writes, and workers record at once: one that
was descheduled between its read and its writes while another recorded twice set the
position back onto a recent failure, and the key read as over its limit after a few
failures, until that one left the window (a refused attempt records nothing). So recording
holds a POSIX record lock on the key's slot (a byte of a file made before the fork: the
kernel drops it if the worker dies), and moves the position before writing the time; a
check that meets a record half-done (the position moved while it read) reads again.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import mmap
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator

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
        self._locks = tempfile.TemporaryFile()  # noqa: SIM115 (lives as the limiter does) a byte per slot

    def _slot(self, key: str) -> int:
        return hash(key) & self._mask

    @contextlib.contextmanager
    def _recording(self, slot: int) -> Iterator[None]:
        """Hold ``slot`` against every other worker recording into it (a few microseconds)."""
        fcntl.lockf(self._locks, fcntl.LOCK_EX, 1, slot)
        try:
            yield
        finally:
            fcntl.lockf(self._locks, fcntl.LOCK_UN, 1, slot)

    def _oldest(self, base: int) -> float:
        """The oldest of the ring's times, read again if a record moved the position meanwhile."""
        words = self._words
        while True:
            position = int(words[base]) % self.limit
            oldest: float = words[base + 1 + position]
            if int(words[base]) % self.limit == position:
                return oldest

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds to wait when any key is over its limit, else None.

        The ring holds a key's last ``limit`` failure times, oldest at the next write
        position: the key is over its limit exactly when that oldest one is still in the
        window, so one look answers whatever the limit.
        """
        now = self._clock()
        waits = []
        for key in keys:
            oldest = self._oldest(self._slot(key) * self._width)
            if oldest > now - self.window:
                waits.append(oldest + self.window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def record(self, keys: Iterable[str]) -> None:
        now = self._clock()
        words = self._words
        for key in keys:
            slot = self._slot(key)
            base = slot * self._width
            with self._recording(slot):
                position = int(words[base]) % self.limit
                words[base] = position + 1  # first: a check meanwhile finds the next-oldest, or reads again
                words[base + 1 + position] = now
