"""The in-process cache tier: answers as records, bounded, TTL-aware, invalidated across workers.

An ``Entry`` is what this worker knows of one handle: its record (or that it does not
exist), how long that holds, and whether it is a stale answer served while the store
fails. Entries are keyed by the handle's normalised key, so every front-end and every
spelling of a handle shares one entry: the REST API's ``GET /api/handles/{h}``, the proxy
form, filtered and authenticated reads, and the Handle protocol. What each front-end
sends is made from the record once, by the front-end, and memoised beside it
(``Entry.rendered``: the one encoding asked for most, in a slot of its own; ``Entry.memo``:
the others, by a key of the front-end's), so a cached answer costs one dict lookup and a
memo read. What an encoding is, is the front-end's business: this tier only keeps it and
counts its bytes.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections import OrderedDict, deque
from typing import Any

from protocol.errors import ProtocolViolation
from protocol.records import PUBLIC_READ, HandleRecord, HandleValue, decode_record, encode_record
from registry.identity.secrets import withhold

# Bytes an entry costs beyond its record's data and its memoised encodings: the Entry
# object and its numbers, the record and value objects, the dict slot and str headers
# (measured with tracemalloc: bench/cache_memory.py).
ENTRY_OVERHEAD = 520
VALUE_OVERHEAD = 190  # per value: the named tuple, its str and bytes
MEMO_OVERHEAD = 120  # per memoised encoding beside the first: its key, bytes header, dict slot
MEMO_MAX = 8  # encodings memoised per entry beside the unfiltered HTTP body
COLD_OVERHEAD = 195  # a cold entry: dict slot, str and bytes headers, its place in the queue
ZDICT_SAMPLES = 64  # records the deflate dictionary is made of
# A 4 KiB dictionary and window: records pack to ~60 bytes and a deflate stream costs 24 us
# to set up instead of 100 (measured on our machines).
ZDICT_BYTES = 4096
ZLIB_WBITS = 12
ZLIB_MEMLEVEL = 4
# expires, stale_until (monotonic), ttl, generation word, slot, found
_COLD = struct.Struct("<ddfQIH")


class Entry:
    """One handle's answer: the record (None: not found) and its encodings, made as asked."""

    __slots__ = (
        "expires",
        "gen",
        "key",
        "memo",
        "prefetching",
        "public",
        "record",
        "refresh_at",
        "rendered",
        "rendered_for",
        "size",
        "slot",
        "stale",
        "stale_until",
        "ttl",
        "used",
    )

    def __init__(
        self, record: HandleRecord | None, ttl: float, expires: float, stale_until: float, slot: int, gen: int
    ) -> None:
        self.record = record
        # What an anonymous client may see, in index order; and what the entry costs.
        public = []
        size = ENTRY_OVERHEAD
        if record is not None:
            size += len(record.handle)
            for v in record.values:
                size += len(v.data) + len(v.type) + VALUE_OVERHEAD
                if v.permissions & PUBLIC_READ:
                    public.append(v)
        # A secret is never public (the write path clears it), and is withheld even if a store says otherwise.
        self.public: tuple[HandleValue, ...] = tuple(withhold(public))
        self.ttl = ttl  # seconds this answer was cached for
        self.expires = expires  # time.monotonic() after which it is not served fresh
        self.refresh_at = expires - ttl * 0.1  # a hit after this refreshes it in the background
        self.stale_until = stale_until  # ... nor stale (when the store fails)
        self.slot = slot
        self.gen = gen
        self.prefetching = False
        self.stale = False  # served in place of an answer the store could not give
        self.used = False  # set by each hit; new entries not hit again go first
        self.rendered: bytes = b""  # the encoding asked most (the REST body), made for ``rendered_for``
        self.rendered_for: str | None = None
        self.memo: dict[Any, Any] | None = None  # other front-ends' encodings, by a key of theirs
        self.key = ""  # set when cached
        self.size = size

    @property
    def found(self) -> bool:
        return self.record is not None


class LocalCache:
    """Entries by normalised handle key, in two forms, within both bounds.

    Hot entries are ``Entry`` objects. ``sweep`` walks them a slice at a time: one not used
    since its last visit goes cold, packed into a single bytes object (a fixed header,
    then the record's stored encoding deflated with a dictionary of records this worker
    served: records of one node look alike, so they pack to a fraction). A cold entry is
    unpacked and made hot again when it is next asked for (``take_cold``); its front-end
    encodings are made again as they are asked for.
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
    def cost(key: str, entry: Entry) -> int:
        return len(key) + entry.size

    @staticmethod
    def cold_cost(key: str, packed: bytes) -> int:
        return len(key) + len(packed) + COLD_OVERHEAD

    def put(self, key: str, entry: Entry) -> None:
        self.drop(key)
        entry.key = key
        self.entries[key] = entry
        self.bytes += self.cost(key, entry)
        self._evict()

    def set_rendered(self, entry: Entry, key: str, encoded: bytes) -> None:
        """Memoise ``entry``'s most asked encoding, made for ``key`` (a front-end's, e.g. a spelling)."""
        grown = len(encoded) - len(entry.rendered)
        entry.rendered, entry.rendered_for = encoded, key
        self._grow(entry, grown)

    def set_memo(self, entry: Entry, key: Any, encoded: Any, size: int) -> None:
        """Memoise another encoding of ``entry`` (``size`` bytes) under a front-end's ``key``."""
        memo = entry.memo
        if memo is None:
            memo = entry.memo = {}
        elif len(memo) >= MEMO_MAX:
            return  # a handle asked in many forms: the others are made each time
        memo[key] = encoded
        self._grow(entry, size + MEMO_OVERHEAD)

    def _grow(self, entry: Entry, grown: int) -> None:
        entry.size += grown
        if self.entries.get(entry.key) is entry:
            self.bytes += grown
            self._evict()

    def drop(self, key: str) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= self.cost(key, old)
        packed = self.cold.pop(key, None)
        if packed is not None:
            self.bytes -= self.cold_cost(key, packed)

    def clear(self) -> None:
        self.entries.clear()
        self.cold.clear()
        self._cold_order.clear()
        self._pass.clear()
        self.bytes = 0

    def take_cold(self, key: str) -> Entry | None:
        """The cold entry for ``key``, made hot again; None if there is none."""
        packed = self.cold.pop(key, None)
        if packed is None:
            return None
        self.bytes -= self.cold_cost(key, packed)
        expires, stale_until, ttl, gen, slot, found = _COLD.unpack_from(packed)
        record = None
        if found:
            blob = zlib.decompressobj(ZLIB_WBITS, zdict=self._zdict or b"").decompress(packed[_COLD.size :])
            try:
                record = decode_record(blob)
            except ProtocolViolation:  # cannot happen unless memory is corrupt: a miss, not a crash
                return None
        entry = Entry(record, ttl, expires, stale_until, slot, gen)
        self.put(key, entry)
        return entry

    def sweep(self, budget: int) -> int:
        """Visit up to ``budget`` hot entries; pack the ones unused since the last visit."""
        if not self._pass:
            self._pass = list(self.entries)
            if self._zdict is None and len(self.entries) >= ZDICT_SAMPLES:
                records = (e.record for e in self.entries.values() if e.record is not None)
                sample = itertools.islice(records, ZDICT_SAMPLES)
                self._zdict = b"".join(encode_record(r) for r in sample)[-ZDICT_BYTES:]
        packed = 0
        for _ in range(min(budget, len(self._pass))):
            key = self._pass.pop()
            entry = self.entries.get(key)
            if entry is None:
                continue
            if entry.used:
                entry.used = False
            elif self._zdict is not None and not entry.stale and not entry.prefetching:
                self._pack(key, entry)
                packed += 1
        return packed

    def _pack(self, key: str, entry: Entry) -> None:
        del self.entries[key]
        self.bytes -= self.cost(key, entry)
        header = _COLD.pack(entry.expires, entry.stale_until, entry.ttl, entry.gen, entry.slot, entry.found)
        if entry.record is None:
            packed = header
        else:
            deflate = zlib.compressobj(6, zlib.DEFLATED, ZLIB_WBITS, ZLIB_MEMLEVEL, zdict=self._zdict or b"")
            packed = header + deflate.compress(encode_record(entry.record)) + deflate.flush()
        self.cold[key] = packed
        self._cold_order.append(key)
        self.bytes += self.cold_cost(key, packed)
        if len(self._cold_order) > 2 * len(self.cold) + 1024:  # forget keys no longer cold
            self._cold_order = deque(k for k in self._cold_order if k in self.cold)

    def _evict(self) -> None:
        entries, cold = self.entries, self.cold
        while len(entries) + len(cold) > self.max_entries or self.bytes > self.max_bytes:
            if cold:
                key = self._cold_order.popleft()
                packed = cold.pop(key, None)
                if packed is not None:
                    self.bytes -= self.cold_cost(key, packed)
                continue
            key, entry = entries.popitem(last=False)
            if entry.used and len(entries) > 0:
                entry.used = False
                entries[key] = entry  # second chance: to the back of the queue
            else:
                self.bytes -= self.cost(key, entry)
