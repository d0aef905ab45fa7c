"""The tiers a lookup goes through: this worker's entries, then Redis, then the source.

``CacheTiers`` owns what happens between "not in this worker's cache" and an answer:

* coalescing: concurrent misses for one handle share one load (a task per handle key);
* prefetch: a hit in the last tenth of an entry's TTL refreshes it in the background, once;
* serve-stale (RFC 8767): when the source fails or times out, an expired answer still
  inside the stale window is served with a 30 s TTL, and the source is not asked again
  for that handle for those 30 s (RFC 8767's failure recheck);
* negative caching: "not found" is cached too, for its own TTL (``negative_ttl``);
* invalidation: a write bumps the handle's generation word for every worker of the node
  (``resolver.cache.generations``) and is announced through Redis to the other nodes.

What a miss reads is not decided here: the engine gives the tiers a ``Source`` that reads
this node's store (``read_store``, batched per loop turn) or asks the servers holding the
handle (``resolver.delegation``). A source fails by raising ``LookupFailed`` with the stale
copy it was handed, if any.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from protocol.errors import HandleError, ProtocolViolation, StoreUnavailable
from protocol.identifiers import Handle
from protocol.records import HandleRecord, decode_record, encode_record
from registry.store import RECENT_WRITE_SECONDS, Store
from resolver import metrics
from resolver.cache.generations import Generations
from resolver.cache.local import Entry, LocalCache
from resolver.cache.redis_tier import RedisEntry, RedisTier
from resolver.cache.store_reads import BatchedReads
from resolver.config import DEFAULTS, Config

log = logging.getLogger("resolver.engine")

STALE_REPLY_TTL = 30  # RFC 8767: the TTL of a stale answer, and how long before the store is retried
SWEEP_INTERVAL = 0.1  # seconds between two slices of the cache sweep
SWEEP_TICKS = 300  # slices per pass: an entry unused for ~30 s is packed
SWEEP_MIN = 64
GAUGE_TICKS = 10  # sweep ticks between two settings of the cache's gauges


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How answers are cached; every default is ``Config``'s."""

    max_entries: int = DEFAULTS.cache_entries
    max_bytes: int = DEFAULTS.cache_bytes
    min_ttl: float = DEFAULTS.cache_min_ttl
    max_ttl: float = DEFAULTS.cache_max_ttl
    negative_ttl: float = DEFAULTS.cache_negative_ttl
    stale_window: float = DEFAULTS.stale_window
    store_timeout: float = DEFAULTS.store_timeout

    @classmethod
    def of(cls, config: Config) -> CachePolicy:
        return cls(
            config.cache_entries,
            config.cache_bytes,
            config.cache_min_ttl,
            config.cache_max_ttl,
            config.cache_negative_ttl,
            config.stale_window,
            config.store_timeout,
        )


class Fetched(NamedTuple):
    record: HandleRecord | None  # None: the handle does not exist
    ttl: float
    expires_at: float  # Unix time
    gen: int  # the handle's generation word read before anything else
    stale: bool = False
    entry: Entry | None = None  # what the load cached


class LookupFailed(Exception):
    """The source could not answer; ``stale`` is an expired answer it may be replaced by."""

    def __init__(self, cause: HandleError, stale: Fetched | None) -> None:
        super().__init__(cause.message)
        self.cause = cause
        self.stale = stale


# What a miss reads: (handle, the nodes the query passed through, a stale copy to fail with).
Source = Callable[[Handle, Sequence[str], "Fetched | None"], Awaitable[HandleRecord | None]]


def record_ttl(record: HandleRecord, now: float, policy: CachePolicy) -> float:
    """How long ``record`` may be cached: its shortest value TTL, clamped to the policy."""
    shortest = policy.max_ttl
    for v in record.values:
        shortest = min(shortest, v.ttl - now if v.ttl_absolute else v.ttl)
    return max(policy.min_ttl, shortest)


async def _no_source(handle: Handle, via: Sequence[str], stale: Fetched | None) -> HandleRecord | None:
    raise LookupFailed(StoreUnavailable("no source of records"), stale)


class CacheTiers:
    """This worker's cache, Redis and the source, in that order, for every front-end."""

    def __init__(
        self,
        store: Store,
        policy: CachePolicy,
        generations: Generations,
        redis: RedisTier | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.generations = generations
        self.words = generations.words
        self.local = LocalCache(policy.max_entries, policy.max_bytes)
        self.redis = redis
        self.source: Source = _no_source  # set by the engine
        self._monotonic = monotonic
        self._wall = wall
        # Loads in flight by handle key, with the generation word each began under.
        self._inflight: dict[str, tuple[asyncio.Task[Fetched], int]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._hits = metrics.RECORDER.hits
        self._reads = BatchedReads(store)
        store.add_write_listener(self.changed)

    # Answers ----------------------------------------------------------------------------

    def fresh(self, key: str) -> Entry | None:
        """The cached answer for the handle ``key`` if it may be served now (the hot path)."""
        entry = self.local.entries.get(key)
        if entry is None:
            # Packed since its last use: its encodings unpacked, the record left packed.
            entry = self.local.cold_entry(key, self.words)
            if entry is None:
                return None
        if entry.gen != self.words[entry.slot]:
            return None
        now = self._monotonic()
        if now >= entry.expires:
            return None
        entry.used = True
        if now >= entry.refresh_at and not entry.prefetching and not entry.stale:
            self.prefetch(key, entry)
        self._hits["local"] += 1
        if entry.stale:
            metrics.count("served_stale")
        return entry

    def cold_answer(self, key: str, form: bytes) -> bytes | None:
        """A Handle answer served from a packed entry's first hit without thawing it
        (``LocalCache.cold_answer``); None: ask ``fresh``."""
        local = self.local
        if key not in local.cold:  # the hot set's hits pay this lookup, nothing more
            return None
        answer = local.cold_answer(key, form, self.words, self._monotonic())
        if answer is not None:
            self._hits["local"] += 1
        return answer

    async def load(self, handle: Handle, via: Sequence[str] = ()) -> Entry:
        """The answer for a handle not in this worker's cache: from Redis or the source, or stale."""
        try:
            fetched = await self.fetch(handle, via=via)
        except LookupFailed as failed:
            return self._stale_answer(handle, failed)
        assert fetched.entry is not None  # every load leaves one
        return fetched.entry

    def remember(self, entry: Entry, key: Any, encoded: Any, size: int) -> None:
        """Keep a front-end's encoding of ``entry`` (``size`` bytes) beside it, under that front-end's ``key``."""
        self.local.set_memo(entry, key, encoded, size)

    def remember_rendered(self, entry: Entry, key: str, encoded: bytes) -> None:
        """Keep the REST body of ``entry``, made for ``key`` (a spelling), in its own slot."""
        self.local.set_rendered(entry, key, encoded)

    def remember_answer(self, entry: Entry, form: bytes, answer: bytes, until: float) -> None:
        """Keep a Handle answer of ``entry`` for requests of ``form`` until ``until`` (monotonic)."""
        self.local.set_answer(entry, form, answer, until)

    def _entry(self, handle: Handle, fetched: Fetched) -> Entry:
        now = self._monotonic()
        left = fetched.expires_at - self._wall()  # less than the TTL for an entry Redis has held a while
        stale_until = now + left + self.policy.stale_window
        expires = now + min(fetched.ttl, left)
        return Entry(fetched.record, fetched.ttl, expires, stale_until, self.generations.slot(handle.key), fetched.gen)

    def _stale_answer(self, handle: Handle, failed: LookupFailed) -> Entry:
        """The source failed: an expired answer still inside the stale window, or the failure.

        The one serve-stale path of every front-end: the expired answer comes from Redis
        or from this worker's tier, and is cached again with the stale reply TTL on every
        value, so that nothing is asked of the source for that long (RFC 8767).
        """
        now = self._monotonic()
        if failed.stale is not None:  # from Redis
            record, gen = failed.stale.record, failed.stale.gen
            stale_until = now + failed.stale.expires_at - self._wall() + self.policy.stale_window
        else:
            old = self.local.entries.get(handle.key) or self.local.take_cold(handle.key)
            if old is None or old.gen != self.words[old.slot] or now >= old.stale_until:
                raise failed.cause from None
            record, gen, stale_until = old.record, old.gen, old.stale_until
        if record is not None:
            record = record.with_values([v._replace(ttl=STALE_REPLY_TTL, ttl_absolute=False) for v in record.values])
        expires = min(now + STALE_REPLY_TTL, stale_until)
        entry = Entry(record, STALE_REPLY_TTL, expires, stale_until, self.generations.slot(handle.key), gen)
        entry.stale = True
        log.warning("lookup failed (%s); serving a stale answer for %s", failed.cause.message, handle.text)
        metrics.count("served_stale")
        metrics.error_answered(failed.cause)  # the store failed though the answer hides it
        self.local.put(handle.key, entry)
        return entry

    # Filling ----------------------------------------------------------------------------

    async def fetch(self, handle: Handle, *, refresh: bool = False, via: Sequence[str] = ()) -> Fetched:
        """The record for ``handle``: one load per handle at a time, whoever else asks meanwhile.

        The load caches its answer (``Fetched.entry``) before it completes: a request
        arriving between the load's end and its waiters' wake-up then finds it cached. A load
        is joined only while the handle's generation word is the one it began under: a
        lookup after an acknowledged write never takes what a read begun before it saw.
        """
        key = handle.key
        gen = self.words[self.generations.slot(key)]  # before reading anything: see resolver.cache.generations
        inflight = self._inflight.get(key)
        if inflight is not None and inflight[1] == gen:
            metrics.count("coalesced")
            task = inflight[0]
        else:
            task = asyncio.create_task(self._load(handle, refresh, via, gen))
            self._inflight[key] = (task, gen)
            task.add_done_callback(lambda t: self._loaded(key, t))
        return await asyncio.shield(task)

    def _loaded(self, key: str, task: asyncio.Task[Fetched]) -> None:
        inflight = self._inflight.get(key)
        if inflight is not None and inflight[0] is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody awaited is not reported twice

    def _kept(self, fetched: Fetched, handle: Handle) -> Fetched:
        """``fetched``, with its answer cached in this worker's tier."""
        entry = self._entry(handle, fetched)
        self.local.put(handle.key, entry)
        return fetched._replace(entry=entry)

    async def _load(self, handle: Handle, refresh: bool, via: Sequence[str], gen: int) -> Fetched:
        key = handle.key
        now = self._wall()
        stale: Fetched | None = None
        if self.redis is not None and not refresh:
            got = await self.redis.get(key)
            record = _decoded(got.record) if got is not None and got.record is not None else None
            if got is not None and (got.record is None or record is not None):
                fetched = Fetched(record, got.ttl, got.expires_at, gen)
                if got.expires_at > now:
                    self._hits["redis"] += 1
                    return self._kept(fetched, handle)
                if now < got.expires_at + self.policy.stale_window:
                    stale = fetched._replace(stale=True)
        if not refresh:
            metrics.count("misses")
        record = await self.source(handle, via, stale)
        ttl = self.policy.negative_ttl if record is None else record_ttl(record, now, self.policy)
        fetched = Fetched(record, ttl, now + ttl, gen)
        if self.redis is not None and self.words[self.generations.slot(key)] == gen:
            # Not when the handle changed meanwhile: what we read may predate the change.
            blob = None if record is None else encode_record(record)
            self.redis.set_later(key, RedisEntry(now + ttl, ttl, blob), ttl + self.policy.stale_window)
        return self._kept(fetched, handle)

    async def read_store(self, key: str, stale: Fetched | None) -> HandleRecord | None:
        """The record ``key`` names in this node's store (a ``Source``'s usual read)."""
        metrics.count("store_reads")
        # Changed lately by a worker of this node (or a peer that told us): a read replica
        # may not have it yet, and what we read now is cached for the record's whole TTL.
        primary = self.generations.changed_within(self.words[self.generations.slot(key)], RECENT_WRITE_SECONDS)
        try:
            async with asyncio.timeout(self.policy.store_timeout):
                return await self._reads.get(key, primary=primary)
        except StoreUnavailable as exc:
            raise LookupFailed(exc, stale) from None
        except TimeoutError:
            cause = StoreUnavailable(f"the store did not answer within {self.policy.store_timeout:g} s")
            raise LookupFailed(cause, stale) from None

    def prefetch(self, key: str, entry: Entry) -> None:
        entry.prefetching = True
        metrics.count("prefetches")
        task = asyncio.create_task(self._refresh(key))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh(self, key: str) -> None:
        try:
            await self.fetch(Handle.of_key(key), refresh=True)
        except (LookupFailed, HandleError) as exc:
            log.debug("prefetch of %s failed: %s", key, exc)

    # Invalidation -----------------------------------------------------------------------

    async def changed(self, keys: list[str]) -> None:
        """The store committed writes to ``keys``: no worker may serve what it cached for them."""
        self._bump(keys, "local")
        if self.redis is not None:
            await self.redis.invalidate(keys)

    def changed_elsewhere(self, keys: Sequence[str]) -> None:
        """Another node announced writes to ``keys``."""
        self._bump(keys, "peer")

    def _bump(self, keys: Sequence[str], source: str) -> None:
        bump = self.generations.bump
        for key in keys:
            bump(key)
        metrics.CACHE_INVALIDATIONS.labels(source).inc(len(keys))

    def forget_all(self) -> None:
        """Drop every entry of this worker (Redis came back: what it missed meanwhile is unknown)."""
        self.local.clear()

    # Background -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background work: packing cold cache entries."""
        sweeper = asyncio.create_task(self._sweep(), name="cache-sweeper")
        self._background.add(sweeper)

    async def _sweep(self) -> None:
        # A slice every tick: a pass over the hot entries takes about SWEEP_TICKS ticks.
        hot, packed = metrics.CACHE_ENTRIES.labels("hot"), metrics.CACHE_ENTRIES.labels("packed")
        for tick in itertools.count():
            await asyncio.sleep(SWEEP_INTERVAL)
            local = self.local
            local.sweep(max(SWEEP_MIN, len(local.entries) // SWEEP_TICKS))
            if tick % GAUGE_TICKS == 0:
                hot.set(len(local.entries))
                packed.set(len(local.cold))
                metrics.CACHE_BYTES.set(local.bytes)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def _decoded(blob: Any) -> HandleRecord | None:
    try:
        return decode_record(blob)
    except ProtocolViolation:
        log.warning("redis: unreadable record in a cache entry; ignored")
        return None
