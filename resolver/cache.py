"""The in-process cache tier: rendered answers, bounded, TTL-aware, invalidated across workers.

An ``Entry`` is what a worker answers an anonymous ``GET /api/handles/{h}`` with: the
rendered JSON body (or the "not found" body), ready to send. ``LocalCache`` keys entries
by the handle exactly as the request spelled it, so a hit costs one dict lookup and no
parsing; each entry remembers the slot of its normalised handle key in ``Generations``.

``Generations`` is a table of 64-bit words in memory shared by all workers of a node
(an anonymous shared mapping made before the workers fork). Writing a handle stores a new,
never-repeated word in its slot; an entry is valid only while its slot still holds the
word it was filled under, read before the store was. So a write acknowledged by any
worker is seen by every worker's next request, with no message to wait for. Different
handles may share a slot: a write then costs the other handle one extra miss, nothing
worse.
"""

from __future__ import annotations

import itertools
import mmap
import os
from collections import OrderedDict

# Bytes an entry costs beyond its body and key: the Entry object, the dict slot, the
# str and bytes headers (measured with tracemalloc by bench/cache_memory.py).
ENTRY_OVERHEAD = 200


class Entry:
    __slots__ = (
        "body",
        "expires",
        "gen",
        "prefetching",
        "refresh_at",
        "slot",
        "stale",
        "stale_until",
        "status",
        "ttl",
        "used",
    )

    def __init__(
        self, body: bytes, status: int, ttl: float, expires: float, stale_until: float, slot: int, gen: int
    ) -> None:
        self.body = body
        self.status = status  # 200, or 404 for a negative answer
        self.ttl = ttl  # seconds this answer was cached for
        self.expires = expires  # time.monotonic() after which it is not served fresh
        self.refresh_at = expires - ttl * 0.1  # a hit after this refreshes it in the background
        self.stale_until = stale_until  # ... nor stale (when the store fails)
        self.slot = slot
        self.gen = gen
        self.prefetching = False
        self.stale = False  # served in place of an answer the store could not give
        self.used = True


class Generations:
    """Per-handle-slot change words shared by every worker of a node."""

    def __init__(self, slots: int = 1 << 21) -> None:
        if slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self._map = mmap.mmap(-1, slots * 8)  # MAP_SHARED | MAP_ANONYMOUS: inherited by fork()
        self.words = memoryview(self._map).cast("Q")
        self.mask = slots - 1
        # Unique across processes without a lock: a counter in the high bits, the pid
        # (below 2**22 on Linux) in the low ones. An aligned 8-byte store is atomic.
        self._counter = itertools.count(1)
        self._pid = os.getpid()

    def slot(self, key: str) -> int:
        # str hashes are salted per interpreter, and workers are forked from one, so
        # every worker of the node computes the same slot.
        return hash(key) & self.mask

    def bump(self, key: str) -> None:
        pid = os.getpid()
        if pid != self._pid:  # a forked worker starts its own sequence
            self._pid, self._counter = pid, itertools.count(1)
        self.words[self.slot(key)] = (next(self._counter) << 22) | (pid & 0x3FFFFF)


class LocalCache:
    """Entries by request spelling; evicts with CLOCK (second chance) past either bound."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def cost(spelling: str, entry: Entry) -> int:
        return len(spelling) + len(entry.body) + ENTRY_OVERHEAD

    def put(self, spelling: str, entry: Entry) -> None:
        old = self.entries.pop(spelling, None)
        if old is not None:
            self.bytes -= self.cost(spelling, old)
        self.entries[spelling] = entry
        self.bytes += self.cost(spelling, entry)
        self._evict()

    def drop(self, spelling: str) -> None:
        old = self.entries.pop(spelling, None)
        if old is not None:
            self.bytes -= self.cost(spelling, old)

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def _evict(self) -> None:
        entries = self.entries
        while len(entries) > self.max_entries or self.bytes > self.max_bytes:
            spelling, entry = entries.popitem(last=False)
            if entry.used and len(entries) > 0:
                entry.used = False
                entries[spelling] = entry  # second chance: to the back of the queue
            else:
                self.bytes -= self.cost(spelling, entry)
