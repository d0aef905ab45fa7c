"""Per-handle change words shared by every worker of a node.

``Generations`` is a table of 64-bit words in memory shared by all workers of a node
(an anonymous shared mapping made before the workers fork). Writing a handle stores a new,
never-repeated word in its slot; an entry is valid only while its slot still holds the
word it was filled under, read before the store was. So a write acknowledged by any
worker is seen by every worker's next request, with no message to wait for. Different
handles may share a slot: a write then costs the other handle one extra miss, nothing
worse.
"""

from __future__ import annotations

import mmap
import os
import time


class Generations:
    """Per-handle-slot change words shared by every worker of a node."""

    def __init__(self, slots: int = 1 << 21) -> None:
        if slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self._map = mmap.mmap(-1, slots * 8)  # MAP_SHARED | MAP_ANONYMOUS: inherited by fork()
        self.words = memoryview(self._map).cast("Q")
        self.mask = slots - 1
        # Unique across processes without a lock: the time of the bump in the high bits,
        # the pid (below 2**22 on Linux) in the low ones. An aligned 8-byte store is atomic.
        self._last = 0
        self._pid = os.getpid()

    def slot(self, key: str) -> int:
        # str hashes are salted per interpreter, and workers are forked from one, so
        # every worker of the node computes the same slot.
        return hash(key) & self.mask

    def bump(self, key: str) -> None:
        pid = os.getpid()
        if pid != self._pid:  # a forked worker starts its own sequence
            self._pid, self._last = pid, 0
        # The high bits are the time in milliseconds, made to grow at every bump of this
        # process so that two bumps never leave the same word: readers can tell how
        # recently a handle changed (``changed_within``) as well as that it did.
        self._last = max(self._last + 1, int(time.time() * 1000))
        self.words[self.slot(key)] = (self._last << 22) | (pid & 0x3FFFFF)

    @staticmethod
    def changed_within(word: int, seconds: float) -> bool:
        """True when the bump that left ``word`` happened less than ``seconds`` ago."""
        return word != 0 and time.time() * 1000 - (word >> 22) < seconds * 1000
