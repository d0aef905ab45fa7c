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
import struct
import time
import zlib
from collections import OrderedDict, deque

# Bytes an entry costs beyond its body and key: the Entry object and its numbers, the
# dict slot, the str and bytes headers (measured with tracemalloc: bench/cache_memory.py).
ENTRY_OVERHEAD = 400
COLD_OVERHEAD = 195  # a cold entry: dict slot, str and bytes headers, its place in the queue
ZDICT_SAMPLES = 64  # bodies the deflate dictionary is made of
# A 4 KiB dictionary and window: bodies pack to ~60 bytes (32 KiB: ~53) and a deflate
# stream costs 24 us to set up instead of 100 (measured on our machines).
ZDICT_BYTES = 4096
ZLIB_WBITS = 12
ZLIB_MEMLEVEL = 4
# expires, stale_until (monotonic), ttl, generation word, slot, HTTP status
_COLD = struct.Struct("<ddfQIH")


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
        self.used = False  # set by each hit; new entries not hit again go first


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


class LocalCache:
    """Entries by request spelling, in two forms, within both bounds.

    Hot entries are ``Entry`` objects with the body ready to send. ``sweep`` walks them a
    slice at a time: one not used since its last visit goes cold, packed into a single
    bytes object (a fixed header, then the body deflated with a dictionary of bodies this
    worker served: records of one node look alike, so 560 bytes become about 60). A cold
    entry is unpacked and made hot again when it is next asked for (``take_cold``).
    Past either bound, cold entries go first, oldest first; then hot ones, with CLOCK
    (second chance).
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.cold: dict[str, bytes] = {}
        self._cold_order: deque[str] = deque()  # may hold keys since dropped or warmed
        self._pass: list[str] = []  # hot keys still to visit in this sweep
        self._zdict: bytes | None = None
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.entries) + len(self.cold)

    @staticmethod
    def cost(spelling: str, entry: Entry) -> int:
        return len(spelling) + len(entry.body) + ENTRY_OVERHEAD

    @staticmethod
    def cold_cost(spelling: str, packed: bytes) -> int:
        return len(spelling) + len(packed) + COLD_OVERHEAD

    def put(self, spelling: str, entry: Entry) -> None:
        self.drop(spelling)
        self.entries[spelling] = entry
        self.bytes += self.cost(spelling, entry)
        self._evict()

    def drop(self, spelling: str) -> None:
        old = self.entries.pop(spelling, None)
        if old is not None:
            self.bytes -= self.cost(spelling, old)
        packed = self.cold.pop(spelling, None)
        if packed is not None:
            self.bytes -= self.cold_cost(spelling, packed)

    def clear(self) -> None:
        self.entries.clear()
        self.cold.clear()
        self._cold_order.clear()
        self._pass.clear()
        self.bytes = 0

    def take_cold(self, spelling: str) -> Entry | None:
        """The cold entry for ``spelling``, made hot again; None if there is none."""
        packed = self.cold.pop(spelling, None)
        if packed is None:
            return None
        self.bytes -= self.cold_cost(spelling, packed)
        expires, stale_until, ttl, gen, slot, status = _COLD.unpack_from(packed)
        body = zlib.decompressobj(ZLIB_WBITS, zdict=self._zdict or b"").decompress(packed[_COLD.size :])
        entry = Entry(body, status, ttl, expires, stale_until, slot, gen)
        self.put(spelling, entry)
        return entry

    def sweep(self, budget: int) -> int:
        """Visit up to ``budget`` hot entries; pack the ones unused since the last visit."""
        if not self._pass:
            self._pass = list(self.entries)
            if self._zdict is None and len(self.entries) >= ZDICT_SAMPLES:
                sample = itertools.islice(self.entries.values(), ZDICT_SAMPLES)
                self._zdict = b"".join(e.body for e in sample)[-ZDICT_BYTES:]
        packed = 0
        for _ in range(min(budget, len(self._pass))):
            spelling = self._pass.pop()
            entry = self.entries.get(spelling)
            if entry is None:
                continue
            if entry.used:
                entry.used = False
            elif self._zdict is not None and not entry.stale and not entry.prefetching:
                self._pack(spelling, entry)
                packed += 1
        return packed

    def _pack(self, spelling: str, entry: Entry) -> None:
        del self.entries[spelling]
        self.bytes -= self.cost(spelling, entry)
        deflate = zlib.compressobj(6, zlib.DEFLATED, ZLIB_WBITS, ZLIB_MEMLEVEL, zdict=self._zdict or b"")
        header = _COLD.pack(entry.expires, entry.stale_until, entry.ttl, entry.gen, entry.slot, entry.status)
        packed = header + deflate.compress(entry.body) + deflate.flush()
        self.cold[spelling] = packed
        self._cold_order.append(spelling)
        self.bytes += self.cold_cost(spelling, packed)
        if len(self._cold_order) > 2 * len(self.cold) + 1024:  # forget keys no longer cold
            self._cold_order = deque(k for k in self._cold_order if k in self.cold)

    def _evict(self) -> None:
        entries, cold = self.entries, self.cold
        while len(entries) + len(cold) > self.max_entries or self.bytes > self.max_bytes:
            if cold:
                spelling = self._cold_order.popleft()
                packed = cold.pop(spelling, None)
                if packed is not None:
                    self.bytes -= self.cold_cost(spelling, packed)
                continue
            spelling, entry = entries.popitem(last=False)
            if entry.used and len(entries) > 0:
                entry.used = False
                entries[spelling] = entry  # second chance: to the back of the queue
            else:
                self.bytes -= self.cost(spelling, entry)
