"""The in-process cache tier: answers as records, bounded, TTL-aware, invalidated across workers.

An ``Entry`` is what this worker knows of one handle: its record (or that it does not
exist), how long that holds, and whether it is a stale answer served while the store
fails. Entries are keyed by the handle's normalised key, so every front-end and every
spelling of a handle shares one entry: the REST API's ``GET /api/handles/{h}``, the proxy
form, filtered and authenticated reads, and the Handle protocol. What each front-end
sends is made from the record once, by the front-end, and memoised beside it
(``Entry.rendered``: the REST body, in a slot of its own; ``Entry.answers``: the Handle
protocol's answers, by the request's form; ``Entry.memo``: the others, by a key of the
front-end's), so a cached answer costs one dict lookup and a memo read. What an encoding
is, is the front-end's business: this tier only keeps it and counts its bytes.

Most entries of a large key set are cold (packed): see ``LocalCache``.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

import msgpack

from protocol.records import PUBLIC_READ, HandleRecord, HandleValue, decode_record, encode_record
from registry.identity.secrets import withhold

# Bytes an entry costs beyond its record's data and its memoised encodings: the Entry
# object and its numbers, the record and value objects, the dict slot and str headers
# (measured with tracemalloc: bench/cache_memory.py; recalibrated for 100,000 entries of
# bench.load_store records with a REST body and a Handle answer each: hot 2,700 bytes
# traced, cold 914, made hot again and decoded 3,763).
ENTRY_OVERHEAD = 700
VALUE_OVERHEAD = 300  # per value: the named tuple, its str and bytes
MEMO_OVERHEAD = 120  # per memoised encoding beside the first: its key, bytes header, dict slot
MEMO_MAX = 8  # encodings memoised per entry beside the unfiltered HTTP body
COLD_OVERHEAD = 350  # a cold entry: dict slot, str and bytes headers, its place in the queue
REFRESH_AHEAD = 0.1  # share of its TTL before expiry from which a hit refreshes an entry
WARMING_MAX = 200_000  # cold keys remembered as hit once, at most (then forgotten, all at once)
ZDICT_SAMPLES = 64  # entries the deflate dictionary is made of
# A 4 KiB dictionary and window: a record and its REST body (~800 bytes) deflate to ~110
# and inflate in ~2.5 us; a larger dictionary saves 5% of the bytes for 40% more time, and
# a deflate stream costs 24 us to set up instead of 100 (measured on our machines). Handle
# answers are kept as sent (~300 bytes each): inflating one would double the cost of a UDP
# answer.
ZDICT_BYTES = 4096
ZLIB_WBITS = 12
ZLIB_MEMLEVEL = 4
# expires, stale_until (monotonic), ttl, generation word, slot, found, values in the record,
# Handle answers, bytes of the record and REST body inflated
_COLD = struct.Struct("<ddfQIHHHI")
# A Handle answer: made again after (monotonic), bytes of the request form, of the answer
_ANSWER = struct.Struct("<dHI")


class Entry:
    """One handle's answer: the record (None: not found) and its encodings, made as asked.

    An entry made from its cold form (``LocalCache.cold_entry``, ``take_cold``) has its
    Handle answers at once, its REST body when first asked for (``rendered``) and its record
    only when something asks for it (``record``): the front-ends' cached answers never do,
    so a cold entry answers for the cost of unpacking.
    """

    __slots__ = (
        "_blob",
        "_deflated",
        "_public",
        "_record",
        "_rendered",
        "_rendered_for",
        "_zdict",
        "answers",
        "expires",
        "found",
        "gen",
        "key",
        "memo",
        "packed",
        "prefetching",
        "refresh_at",
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
        self._record = record
        self._blob: bytes | None = None  # the record's stored encoding, until it is decoded
        self._public: tuple[HandleValue, ...] | None = None
        self.found = record is not None
        size = ENTRY_OVERHEAD
        if record is not None:
            size += len(record.handle)
            for v in record.values:
                size += len(v.data) + len(v.type) + VALUE_OVERHEAD
        self.ttl = ttl  # seconds this answer was cached for
        self.expires = expires  # time.monotonic() after which it is not served fresh
        self.refresh_at = expires - ttl * REFRESH_AHEAD  # a hit after this refreshes it in the background
        self.stale_until = stale_until  # ... nor stale (when the store fails)
        self.slot = slot
        self.gen = gen
        self.prefetching = False
        self.stale = False  # served in place of an answer the store could not give
        self.used = False  # set by each hit; new entries not hit again go first
        self._rendered = b""  # the REST body, made for ``rendered_for`` (a spelling)
        self._rendered_for: str | None = None
        # A thawed entry's record and REST body, deflated with this dictionary, until asked for.
        self._deflated: bytes | None = None
        self._zdict = b""
        self.answers: dict[bytes, tuple[bytes, float]] | None = None  # Handle answers: form -> (bytes, until)
        self.memo: dict[Any, Any] | None = None  # other encodings, by a key of their front-end's
        self.packed: bytes | None = None  # the cold form, while it still holds every encoding above
        self.key = ""  # set when cached
        self.size = size

    @property
    def rendered(self) -> bytes:
        if self._deflated is not None:
            self._inflate()
        return self._rendered

    @property
    def rendered_for(self) -> str | None:
        if self._deflated is not None:
            self._inflate()
        return self._rendered_for

    def _inflate(self) -> None:
        assert self._deflated is not None
        payload = zlib.decompressobj(ZLIB_WBITS, zdict=self._zdict).decompress(self._deflated)
        self._deflated = None
        blob, self._rendered, self._rendered_for = msgpack.unpackb(payload)
        if self.found:
            self._blob = blob

    @property
    def record(self) -> HandleRecord | None:
        if self._deflated is not None:
            self._inflate()
        if self._blob is not None:
            self._record = decode_record(self._blob)
            self._blob = None
        return self._record

    @property
    def public(self) -> tuple[HandleValue, ...]:
        """What an anonymous client may see, in index order.

        A secret is never public (the write path clears it), and is withheld even if a
        store says otherwise.
        """
        if self._public is None:
            record = self.record
            values = [] if record is None else [v for v in record.values if v.permissions & PUBLIC_READ]
            self._public = tuple(withhold(values))
        return self._public


class LocalCache:
    """Entries by normalised handle key, in two forms, within both bounds.

    Hot entries are ``Entry`` objects. ``sweep`` walks them a slice at a time: one not used
    since its last visit goes cold, packed into a single bytes object: a fixed header, the
    Handle answers as they are sent, then the record's stored encoding and the REST body
    deflated together with a dictionary of what this worker served (records of one node
    look alike, so they pack to a seventh). A cold entry's first hit since the sweeper's
    last pass is served from a copy that leaves it packed (``cold_entry``); asked again, it
    is made hot (``take_cold``). Either way its Handle answers come at once, the rest is
    inflated when first asked for (the REST body), and the record is decoded only when a
    slow path needs it: an answer costs about the same whether it was asked a second or an
    hour ago. A thawed entry keeps its cold form while its encodings stay the same, so
    packing it again costs nothing.

    Past the entry bound, cold entries go first, oldest first; then hot ones, with CLOCK
    (second chance). Past the byte bound, hot entries are packed first (CLOCK), and cold
    ones dropped only when none is left hot.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.cold: dict[str, bytes] = {}
        # Keys in the order they were packed; may hold keys since dropped, warmed, or packed
        # again (such a key keeps its first place: eviction order is approximate).
        self._cold_order: deque[str] = deque()
        self._pass: list[str] = []  # hot keys still to visit in this sweep
        self._warming: set[str] = set()  # cold keys hit once since the sweep's last pass began
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
        """Memoise ``entry``'s REST body, made for ``key`` (a spelling)."""
        self._adopt(entry)
        grown = len(encoded) - len(entry.rendered)
        entry._rendered, entry._rendered_for = encoded, key
        self._grow(entry, grown - self._unpacked(entry))

    def set_answer(self, entry: Entry, form: bytes, answer: bytes, until: float) -> None:
        """Memoise a Handle answer of ``entry`` for requests of ``form``, to be made again after ``until``."""
        self._adopt(entry)
        answers = entry.answers
        if answers is None:
            answers = entry.answers = {}
        elif len(answers) >= MEMO_MAX and form not in answers:
            return  # a handle asked in many forms: the others are made each time
        old = answers.get(form)
        answers[form] = (answer, until)
        grown = len(answer) - len(old[0]) if old is not None else len(form) + len(answer) + MEMO_OVERHEAD
        self._grow(entry, grown - self._unpacked(entry))

    def set_memo(self, entry: Entry, key: Any, encoded: Any, size: int) -> None:
        """Memoise another encoding of ``entry`` (``size`` bytes) under a front-end's ``key``; never packed."""
        self._adopt(entry)
        memo = entry.memo
        if memo is None:
            memo = entry.memo = {}
        elif len(memo) >= MEMO_MAX:
            return  # a handle asked in many forms: the others are made each time
        memo[key] = encoded
        self._grow(entry, size + MEMO_OVERHEAD)

    @staticmethod
    def _unpacked(entry: Entry) -> int:
        """Forget ``entry``'s cold form (its encodings changed); the bytes that frees."""
        packed = entry.packed
        if packed is None:
            return 0
        entry.packed = None
        return len(packed)

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
        self._warming.clear()
        self.bytes = 0

    def cold_entry(self, key: str, words: Sequence[int]) -> Entry | None:
        """The entry for ``key`` from its cold form (None if there is none, or if its handle
        changed: ``take_cold``).

        On its first hit since the sweeper's last pass, a copy that leaves the cold form where
        it is: a key of a large set asked uniformly costs no churn (making it hot would pack
        another). On its next, made hot (``take_cold``); so is a copy a front-end memoises an
        encoding beside (``set_rendered``, ``set_answer``).
        """
        packed = self.cold.get(key)
        if packed is None:
            return None
        if key in self._warming:
            return self.take_cold(key, words)
        entry = self._thawed(key, packed, words)
        if entry is None:
            self.drop(key)
            return None
        self._warm(key)
        return entry

    def cold_answer(self, key: str, form: bytes, words: Sequence[int], now: float) -> bytes | None:
        """The Handle answer for requests of ``form`` straight from ``key``'s cold form, on its
        first hit since the sweeper's last pass (as ``cold_entry``, without making an entry:
        the long tail's UDP answers); None when there is none to give that way (not cold, hit
        before, changed, expired or due a refresh, no such answer): ask ``cold_entry``."""
        packed = self.cold.get(key)
        if packed is None or key in self._warming:
            return None
        expires, _, ttl, gen, slot, _, _, count, _ = _COLD.unpack_from(packed)
        if words[slot] != gen or now >= expires - ttl * REFRESH_AHEAD:  # past its Entry.refresh_at
            return None
        at = _COLD.size
        for _ in range(count):
            until, form_length, length = _ANSWER.unpack_from(packed, at)
            at += _ANSWER.size
            if form_length == len(form) and packed.startswith(form, at):
                if now > until:
                    return None
                self._warm(key)
                at += form_length
                return packed[at : at + length]
            at += form_length + length
        return None

    def _warm(self, key: str) -> None:
        """Note a cold key's first hit: its next makes it hot."""
        if len(self._warming) >= WARMING_MAX:
            self._warming.clear()
        self._warming.add(key)

    def take_cold(self, key: str, words: Sequence[int] | None = None) -> Entry | None:
        """The cold entry for ``key``, made hot again; None if there is none, or if its
        generation word is no longer the one in ``words`` (the handle changed: dropped)."""
        packed = self.cold.pop(key, None)
        if packed is None:
            return None
        self.bytes -= self.cold_cost(key, packed)
        self._warming.discard(key)
        entry = self._thawed(key, packed, words)
        if entry is None:
            return None
        self.entries[key] = entry  # not in either form any more: put() without its drop()
        self.bytes += len(key) + entry.size
        if self.bytes > self.max_bytes:
            self._evict()
        return entry

    def _thawed(self, key: str, packed: bytes, words: Sequence[int] | None) -> Entry | None:
        """An entry made from the cold form ``packed``: its Handle answers at once, the rest
        when first asked for; None if its generation word is no longer the one in ``words``."""
        expires, stale_until, ttl, gen, slot, found, values, count, payload = _COLD.unpack_from(packed)
        if words is not None and words[slot] != gen:
            return None
        entry = Entry(None, ttl, expires, stale_until, slot, gen)
        # Counted as if the rest were inflated already: it is, as soon as anything asks.
        size = entry.size + len(packed) + payload + values * VALUE_OVERHEAD
        at = _COLD.size
        if count:
            answers = entry.answers = {}
            for _ in range(count):
                until, form_length, length = _ANSWER.unpack_from(packed, at)
                at += _ANSWER.size
                form = packed[at : at + form_length]
                at += form_length
                answers[form] = (packed[at : at + length], until)
                at += length
                size += form_length + length + MEMO_OVERHEAD
        entry.found = bool(found)
        entry._deflated = packed[at:]
        entry._zdict = self._zdict or b""
        entry.packed = packed
        entry.size = size
        entry.key = key
        return entry

    def _adopt(self, entry: Entry) -> None:
        """Make hot a copy ``cold_entry`` served, before a front-end adds to it (else it is lost)."""
        key = entry.key
        packed = entry.packed
        if packed is None or key in self.entries or self.cold.get(key) is not packed:
            return
        del self.cold[key]
        self._warming.discard(key)
        self.bytes += self.cost(key, entry) - self.cold_cost(key, packed)
        self.entries[key] = entry

    def sweep(self, budget: int) -> int:
        """Visit up to ``budget`` hot entries; pack the ones unused since the last visit."""
        if not self._pass:
            self._pass = list(self.entries)
            self._warming.clear()
            if self._zdict is None and len(self.entries) >= ZDICT_SAMPLES:
                self._zdict = self._dictionary()
        packed = 0
        for _ in range(min(budget, len(self._pass))):
            key = self._pass.pop()
            entry = self.entries.get(key)
            if entry is None:
                continue
            if entry.used:
                entry.used = False
            elif self._zdict is not None and not entry.stale and not entry.prefetching:
                del self.entries[key]
                self._pack(key, entry)
                packed += 1
        return packed

    def _dictionary(self, *more: Entry) -> bytes:
        """A deflate dictionary made of what this worker's first entries hold."""
        sample = itertools.islice(itertools.chain(more, self.entries.values()), ZDICT_SAMPLES)
        return b"".join(_rest(e) for e in sample)[-ZDICT_BYTES:]

    def _pack(self, key: str, entry: Entry) -> None:
        """Keep ``entry``, just taken out of the hot entries, in its cold form."""
        self.bytes -= self.cost(key, entry)
        packed = entry.packed
        if packed is None:
            packed = self._packed(entry)
        self.cold[key] = packed
        self._cold_order.append(key)
        self.bytes += self.cold_cost(key, packed)
        if len(self._cold_order) > 2 * len(self.cold) + 1024:  # forget keys no longer cold
            self._cold_order = deque(k for k in self._cold_order if k in self.cold)

    def _packed(self, entry: Entry) -> bytes:
        """The cold form of ``entry``: a header, its Handle answers as they are sent, then
        its record and REST body deflated."""
        rest = _rest(entry)
        deflate = zlib.compressobj(6, zlib.DEFLATED, ZLIB_WBITS, ZLIB_MEMLEVEL, zdict=self._zdict or b"")
        deflated = deflate.compress(rest) + deflate.flush()
        record = entry.record
        values = 0 if record is None else len(record.values)
        answers = entry.answers or {}
        parts = [
            _COLD.pack(
                entry.expires,
                entry.stale_until,
                entry.ttl,
                entry.gen,
                entry.slot,
                entry.found,
                values,
                len(answers),
                len(rest),
            )
        ]
        for form, (answer, until) in answers.items():
            parts += (_ANSWER.pack(until, len(form), len(answer)), form, answer)
        parts.append(deflated)
        return b"".join(parts)

    def _evict(self) -> None:
        entries, cold = self.entries, self.cold
        while len(entries) + len(cold) > self.max_entries:
            if not self._drop_cold():
                self._clock(pack=False)
        while self.bytes > self.max_bytes:
            if entries:
                self._clock(pack=True)
            elif not self._drop_cold():
                break

    def _drop_cold(self) -> bool:
        """Drop the oldest cold entry; False when there is none."""
        while self.cold:
            key = self._cold_order.popleft()
            packed = self.cold.pop(key, None)
            if packed is not None:
                self.bytes -= self.cold_cost(key, packed)
                return True
        return False

    def _clock(self, *, pack: bool) -> None:
        """Give the oldest hot entry a second chance if it was used, else pack or drop it."""
        entries = self.entries
        key, entry = entries.popitem(last=False)
        if entry.used and len(entries) > 0:
            entry.used = False
            entries[key] = entry  # second chance: to the back of the queue
        elif pack and not entry.stale and not entry.prefetching:
            if self._zdict is None:
                self._zdict = self._dictionary(entry)
            self._pack(key, entry)
        else:
            self.bytes -= self.cost(key, entry)


def _rest(entry: Entry) -> bytes:
    """What the cold form of ``entry`` deflates: its record's encoding and its REST body."""
    rendered, rendered_for = entry.rendered, entry.rendered_for  # inflates a thawed entry's
    blob = entry._blob
    if blob is None and entry.found:
        record = entry.record
        assert record is not None
        blob = encode_record(record)
    rest: bytes = msgpack.packb((blob, rendered, rendered_for), use_bin_type=True)
    return rest
