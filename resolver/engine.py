"""The resolution engine: the one place that decides how a handle is answered.

A handle is looked up in this worker's cache (``resolver.cache``), then in Redis when one
is configured (``resolver.redis_tier``), then in the store. Around the store read:

* coalescing: concurrent misses for one handle share one read (a task per handle key);
* prefetch: a hit in the last tenth of an entry's TTL refreshes it in the background, once;
* serve-stale (RFC 8767): when the store fails or times out, an expired answer still
  inside the stale window is served with a 30 s TTL, and the store is not asked again
  for that handle for those 30 s (RFC 8767's failure recheck);
* negative caching: "not found" is cached too, for its own (capped) TTL.

Writes reach the engine through the store's write listener (``changed``): the handle's
generation word is bumped for every worker of the node before the writer is answered,
and Redis is told, for the other nodes.

Who holds a handle (this node's store, or which servers elsewhere) is decided by
``resolver.routing``, a state machine without I/O; the engine drives it (``_route``),
fetching the prefix handles ``0.NA/<zone>`` it asks for. A handle under the node prefix
whose referrals this worker already holds is decided synchronously (``_known_here``).

Referrals are records like any other (same cache tiers, coalescing, serve-stale) and
are kept decoded per worker besides (``_referrals``). A remote answer is accepted only
for the handle asked and only from a server the referral designated; queries carry the
nodes they passed through (``Idnode-Via``) so that loops and over-deep chains are cut.
A server is asked over HTTP(S) when it has such an interface (another idnode), else over
the Handle protocol, UDP then TCP (``resolver.handle_client``: CNRI servers, the real
top-level nodes), with the same bailiwick, timeouts and failover. A designated server is
asked only at an address ``DelegationPolicy.destinations`` allows (``resolver.target_policy``);
one it refuses counts as a failed server, like one that cannot be reached, and the next is
tried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from protocol.codes import ResponseCode
from protocol.errors import (
    HandleError,
    HandleNotFound,
    ProtocolViolation,
    RecursionLoop,
    StoreUnavailable,
    UpstreamFailed,
    UpstreamTimeout,
)
from protocol.identifiers import (
    NA_PREFIX,
    Handle,
    ascii_upper,
    check_responsible,
    is_at_or_under,
    parse_handle,
    prefix_handle,
)
from protocol.jsonfmt import value_to_json
from protocol.records import HandleRecord, HandleValue, decode_record, encode_record
from registry.store import RECENT_WRITE_SECONDS, Store
from resolver import metrics
from resolver.cache.local import Entry, Generations, LocalCache
from resolver.cache.redis_tier import RedisEntry, RedisTier
from resolver.delegation.handle_client import HandleClient, HandleTarget, server_targets
from resolver.delegation.routing import (
    LOCAL,
    Decision,
    NeedReferral,
    NeedService,
    Referral,
    Referrals,
    Route,
    Routing,
    ThisNode,
    held_here,
    referral_of,
)
from resolver.delegation.target_policy import TargetPolicy
from resolver.delegation.upstream import HopFailed, NodeClient, Target

log = logging.getLogger("resolver.engine")

STALE_REPLY_TTL = 30  # RFC 8767: the TTL of a stale answer, and how long before the store is retried
SWEEP_INTERVAL = 0.1  # seconds between two slices of the cache sweep
SWEEP_TICKS = 300  # slices per pass: an entry unused for ~30 s is packed
SWEEP_MIN = 64


@dataclass(frozen=True, slots=True)
class CachePolicy:
    max_entries: int = 1_000_000
    max_bytes: int = 512 * 1024 * 1024
    min_ttl: float = 1.0
    max_ttl: float = 3600.0
    negative_ttl: float = 60.0
    stale_window: float = 86400.0
    store_timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class DelegationPolicy:
    recursion: bool = False  # resolve handles held elsewhere for clients
    upstreams: tuple[Target, ...] = ()  # the top-level node(s)
    hop_timeout: float = 2.0
    total_timeout: float = 5.0
    max_depth: int = 8  # nodes one query may pass through
    destinations: TargetPolicy = field(default_factory=TargetPolicy)  # where servers named by records may be


class Fetched(NamedTuple):
    record: HandleRecord | None  # None: the handle does not exist
    ttl: float
    expires_at: float  # Unix time
    gen: int  # the handle's generation word read before anything else
    stale: bool = False
    entry: Entry | None = None  # what the load cached


class _StoreFailed(Exception):
    def __init__(self, cause: HandleError, stale: Fetched | None) -> None:
        super().__init__(cause.message)
        self.cause = cause
        self.stale = stale


def record_ttl(record: HandleRecord, now: float, policy: CachePolicy) -> float:
    """How long ``record`` may be cached: its shortest value TTL, clamped to the policy."""
    shortest = policy.max_ttl
    for v in record.values:
        shortest = min(shortest, v.ttl - now if v.ttl_absolute else v.ttl)
    return max(policy.min_ttl, shortest)


def render_values(handle_text: str, values: Sequence[HandleValue], ttl: int | None = None) -> bytes:
    """The body of a successful resolution; ``ttl`` overrides every value's (stale answers)."""
    shown = []
    for v in values:
        item = value_to_json(v)
        if ttl is not None:
            item["ttl"] = ttl
        shown.append(item)
    body = {"responseCode": 1, "handle": handle_text, "values": shown}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def render_not_found(handle_text: str) -> bytes:
    body = {"responseCode": int(ResponseCode.HANDLE_NOT_FOUND), "handle": handle_text}
    body["message"] = f"handle {handle_text} not found"
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class BatchedReads:
    """Store reads asked for in one turn of the event loop, made in one ``get_many``.

    Under load many misses arrive together; one trip to the store's reader threads for
    all of them costs far less than one each (the hop, not the lookup, dominates).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[str, asyncio.Future[HandleRecord | None]] = {}
        self._pending_primary: dict[str, asyncio.Future[HandleRecord | None]] = {}
        self._reads: set[asyncio.Task[None]] = set()

    def get(self, key: str, *, primary: bool = False) -> asyncio.Future[HandleRecord | None]:
        """``primary``: see ``Store.get_many``."""
        pending = self._pending_primary if primary else self._pending
        future = pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._pending and not self._pending_primary:
                loop.call_soon(self._flush)
            future = pending[key] = loop.create_future()
        return future

    def _flush(self) -> None:
        batches = [(self._pending, False), (self._pending_primary, True)]
        self._pending, self._pending_primary = {}, {}
        for batch, primary in batches:
            if batch:
                task = asyncio.create_task(self._read(batch, primary))
                self._reads.add(task)
                task.add_done_callback(self._reads.discard)

    async def _read(self, batch: dict[str, asyncio.Future[HandleRecord | None]], primary: bool) -> None:
        try:
            found = await self._store.get_many(list(batch), primary=primary)
        except Exception as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # whoever waited may have given up: not "never retrieved"
            return
        for key, future in batch.items():
            if not future.done():
                future.set_result(found.get(key))


class ResolutionEngine:
    def __init__(
        self,
        store: Store,
        *,
        node_prefix: str,
        case_sensitive: bool = False,
        policy: CachePolicy | None = None,
        generations: Generations | None = None,
        redis: RedisTier | None = None,
        delegation: DelegationPolicy | None = None,
        node_id: str = "",
    ) -> None:
        self._store = store
        self._node_prefix = node_prefix
        self._case_sensitive = case_sensitive
        self.policy = policy or CachePolicy()
        self.generations = generations or Generations()
        self.words = self.generations.words
        self.local = LocalCache(self.policy.max_entries, self.policy.max_bytes)
        self.redis = redis
        self._inflight: dict[str, asyncio.Task[Fetched]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._hits = metrics.RECORDER.hits
        self._reads = BatchedReads(store)
        store.add_write_listener(self.changed)
        self.delegation = delegation or DelegationPolicy()
        self.node_id = node_id or "idnode"
        self.client = NodeClient(self.node_id, self.delegation.hop_timeout, self.delegation.destinations)
        self.handle_client = HandleClient(self.delegation.hop_timeout, self.delegation.destinations)
        self.advertised: tuple[str, int] | None = None  # set once the node listens
        self._referrals = Referrals(self.words)
        self._here: ThisNode | None = None
        self._events = metrics.RECORDER.events

    @property
    def node_prefix(self) -> str:
        return self._node_prefix

    # Answers ----------------------------------------------------------------------------

    def key_of(self, spelling: str) -> str:
        """The cache key of a handle as a request spelled it, without validating it.

        A handle's key differs from its spelling only in the case of ASCII letters, which
        no validity rule looks at; so a spelling whose key is cached is a valid handle.
        (A case-sensitive node's prefix handles spelled in lower case miss here and are
        found by ``lookup``.)
        """
        if not self._case_sensitive:
            return ascii_upper(spelling)
        prefix, slash, suffix = spelling.partition("/")
        return ascii_upper(prefix) + slash + suffix

    def fresh(self, key: str) -> Entry | None:
        """The cached answer for the handle ``key`` if it may be served now (the hot path)."""
        entry = self.local.entries.get(key)
        if entry is None or entry.gen != self.words[entry.slot]:
            return None
        now = time.monotonic()
        if now >= entry.expires:
            return None
        entry.used = True
        if now >= entry.refresh_at and not entry.prefetching and not entry.stale:
            self.prefetch(key, entry)
        self._hits["local"] += 1
        if entry.stale:
            metrics.count("served_stale")
        return entry

    def http_body(self, entry: Entry, spelling: str, text: str | None = None) -> bytes:
        """The unfiltered REST answer of ``entry`` for ``spelling`` (whose handle's text is
        ``text``, if known), rendered once and memoised."""
        if entry.http_for != spelling:
            if text is None:
                text = parse_handle(spelling, case_sensitive=self._case_sensitive).text
            body = render_not_found(text) if entry.record is None else render_values(text, entry.public)
            self.local.set_http(entry, spelling, body)
        return entry.http

    async def answer(self, spelling: str, via: Sequence[str] = ()) -> Entry:
        """The answer for ``spelling`` with its unfiltered REST body memoised (``Entry.http``).

        ``via``: the nodes the query passed through before this one (another node asking).
        """
        handle = parse_handle(spelling, case_sensitive=self._case_sensitive)
        entry = await self.lookup(handle, via)  # the front-end's own fresh() missed: no second try here
        self.http_body(entry, spelling, handle.text)
        return entry

    async def lookup(self, handle: Handle, via: Sequence[str] = ()) -> Entry:
        """What is known of ``handle``, through every cache tier: every front-end's read.

        A stale answer (the store failed; RFC 8767) comes back as an entry marked ``stale``
        whose values carry the stale reply TTL.
        """
        key = handle.key
        entry = self.fresh(key)
        if entry is not None:
            return entry
        if self.local.take_cold(key) is not None:  # packed away since its last use
            entry = self.fresh(key)
            if entry is not None:
                return entry
        self._admit(handle, via)
        try:
            fetched = await self._fetch(handle, via=via)
        except _StoreFailed as failed:
            return self._stale_answer(handle, failed)
        assert fetched.entry is not None  # every load leaves one
        return fetched.entry

    async def resolve(self, handle: Handle, via: Sequence[str] = ()) -> HandleRecord:
        """The whole record for ``handle`` (for callers that see more than the public view)."""
        entry = await self.lookup(handle, via)
        if entry.record is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        return entry.record

    def _admit(self, handle: Handle, via: Sequence[str]) -> None:
        """Refuse at once what this node will not look up: others' handles without recursion, loops."""
        if not self.delegation.recursion:
            check_responsible(handle.zone, self._node_prefix, handle.text, handle=handle.text)
        if via:
            if self.node_id in via:
                raise RecursionLoop(
                    f"delegation loop: the query for {handle.text} came back to this node through {', '.join(via)}",
                    handle=handle.text,
                )
            if len(via) >= self.delegation.max_depth:
                raise RecursionLoop(
                    f"the query for {handle.text} passed through {len(via)} nodes; the limit is "
                    f"{self.delegation.max_depth}",
                    handle=handle.text,
                )

    def _entry(self, handle: Handle, fetched: Fetched) -> Entry:
        now = time.monotonic()
        left = fetched.expires_at - time.time()  # less than the TTL for an entry Redis has held a while
        stale_until = now + left + self.policy.stale_window
        expires = now + min(fetched.ttl, left)
        return Entry(fetched.record, fetched.ttl, expires, stale_until, self.generations.slot(handle.key), fetched.gen)

    def _stale_answer(self, handle: Handle, failed: _StoreFailed) -> Entry:
        """The store failed: an expired answer still inside the stale window, or the failure.

        The one serve-stale path of every front-end: the expired answer comes from Redis
        or from this worker's tier, and is cached again with the stale reply TTL on every
        value, so that nothing is asked of the store for that long (RFC 8767).
        """
        now = time.monotonic()
        if failed.stale is not None:  # from Redis
            record, gen = failed.stale.record, failed.stale.gen
            stale_until = now + failed.stale.expires_at - time.time() + self.policy.stale_window
        else:
            old = self.local.entries.get(handle.key)
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

    async def _fetch(self, handle: Handle, *, refresh: bool = False, via: Sequence[str] = ()) -> Fetched:
        """The record for ``handle``: one load per handle at a time, whoever else asks meanwhile.

        The load caches its answer (``Fetched.entry``) before it completes: a request
        arriving between the load's end and its waiters' wake-up then finds it cached.
        """
        key = handle.key
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._load(handle, refresh, via))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._loaded(key, t))
        else:
            metrics.count("coalesced")
        return await asyncio.shield(task)

    def _loaded(self, key: str, task: asyncio.Task[Fetched]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody awaited is not reported twice

    def _kept(self, fetched: Fetched, handle: Handle) -> Fetched:
        """``fetched``, with its answer cached in this worker's tier."""
        entry = self._entry(handle, fetched)
        self.local.put(handle.key, entry)
        return fetched._replace(entry=entry)

    async def _load(self, handle: Handle, refresh: bool, via: Sequence[str] = ()) -> Fetched:
        key = handle.key
        gen = self.words[self.generations.slot(key)]  # before reading anything: see resolver.cache
        now = time.time()
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
        if self._held_here(handle) or self._known_here(handle):
            record = await self._read_store(key, stale)
        else:
            record = await self._delegated(handle, via, stale)
        ttl = self.policy.negative_ttl if record is None else record_ttl(record, now, self.policy)
        fetched = Fetched(record, ttl, now + ttl, gen)
        if self.redis is not None and self.words[self.generations.slot(key)] == gen:
            # Not when the handle changed meanwhile: what we read may predate the change.
            blob = None if record is None else encode_record(record)
            self.redis.set_later(key, RedisEntry(now + ttl, ttl, blob), ttl + self.policy.stale_window)
        return self._kept(fetched, handle)

    async def _read_store(self, key: str, stale: Fetched | None) -> HandleRecord | None:
        metrics.count("store_reads")
        # Changed lately by a worker of this node (or a peer that told us): a read replica
        # may not have it yet, and what we read now is cached for the record's whole TTL.
        primary = self.generations.changed_within(self.words[self.generations.slot(key)], RECENT_WRITE_SECONDS)
        try:
            async with asyncio.timeout(self.policy.store_timeout):
                return await self._reads.get(key, primary=primary)
        except StoreUnavailable as exc:
            raise _StoreFailed(exc, stale) from None
        except TimeoutError:
            cause = StoreUnavailable(f"the store did not answer within {self.policy.store_timeout:g} s")
            raise _StoreFailed(cause, stale) from None

    # Delegation -------------------------------------------------------------------------

    def _held_here(self, handle: Handle) -> bool:
        """True when no prefix handle can send ``handle`` elsewhere (no referral to look at)."""
        return held_here(handle, self._node_prefix)

    def _known_here(self, handle: Handle) -> bool:
        """True when the referrals this worker holds already say ``handle`` is held here.

        The routing run on those alone: the common case (a handle under one of this node's
        own enterprise prefixes) pays for no coroutine and no timer. False means "find out"
        (``_delegated``, which raises what the routing refuses, as a lookup does).
        """
        routing = self._routing(handle)
        try:
            if routing.next() is not LOCAL:
                return False
        except HandleError:
            return False
        self._events["referral_hits"] += routing.hits
        return True

    def _routing(self, handle: Handle) -> Routing:
        here = self._here
        if here is None or here.advertised != self.advertised:  # made again once the node listens
            d = self.delegation
            here = self._here = ThisNode(self._node_prefix, d.recursion, bool(d.upstreams), self.advertised)
        return Routing(handle, here, self._known_referral)

    def _known_referral(self, zone: str) -> Referral | None:
        return self._referrals.fresh(zone, time.monotonic())

    async def _delegated(self, handle: Handle, via: Sequence[str], stale: Fetched | None) -> HandleRecord | None:
        """The record of a handle that may be held elsewhere: from the store or the node holding it."""
        budget = self.delegation.total_timeout
        routing = self._routing(handle)
        try:
            if is_at_or_under(handle.zone, self._node_prefix):
                # Only this node's prefix handles are read (each store read has its own
                # timeout): the common case, a handle held here, pays for no other timer.
                decision = await self._route(routing, via)
                if not isinstance(decision, Route):  # LOCAL: nothing under the node prefix is unregistered
                    return await self._read_store(handle.key, stale)
                async with asyncio.timeout(budget):
                    return await self._ask(handle, decision, via)
            async with asyncio.timeout(budget):
                decision = await self._route(routing, via)
                if not isinstance(decision, Route):  # UNREGISTERED: nothing elsewhere is held here
                    return None
                return await self._ask(handle, decision, via)
        except _StoreFailed as failed:  # a referral could not be had: this answer's stale copy, if any
            raise _StoreFailed(failed.cause, stale) from None
        except (UpstreamFailed, RecursionLoop) as exc:
            raise _StoreFailed(exc, stale) from None
        except TimeoutError:
            cause = UpstreamTimeout(f"resolving {handle.text} took longer than {budget:g} s", handle=handle.text)
            raise _StoreFailed(cause, stale) from None

    async def _route(self, routing: Routing, via: Sequence[str]) -> Decision:
        """Drive ``routing`` to its decision, fetching the referrals it asks for."""
        try:
            while True:
                step = routing.next()
                if not isinstance(step, NeedReferral | NeedService):
                    return step
                routing.referred(step.zone, await self._referral(step.zone, via))
        finally:
            metrics.count("referral_hits", routing.hits)

    async def _referral(self, zone: str, via: Sequence[str]) -> Referral:
        """Who serves ``zone``, which this worker holds no fresh referral for: its prefix handle, fetched."""
        now = time.monotonic()
        handle = prefix_handle(zone)
        try:
            fetched = await self._fetch(handle, via=via)
        except _StoreFailed as failed:
            held = self._referrals.stale(zone, now)
            if held is not None:
                log.warning("cannot refresh the referral for %s (%s); using the expired one", zone, failed.cause)
                return held
            if failed.stale is None:
                raise
            fetched = failed.stale
        referral = referral_of(fetched.record)
        left = fetched.expires_at - time.time()
        now = time.monotonic()
        expires, stale_until = now + min(fetched.ttl, left), now + left + self.policy.stale_window
        slot = self.generations.slot(handle.key)
        self._referrals.keep(zone, referral, expires=expires, stale_until=stale_until, slot=slot, gen=fetched.gen)
        return referral

    def _targets(self, route: Route) -> tuple[Target | HandleTarget, ...]:
        """How to reach ``route``'s servers: each by HTTP(S) when it has it, else by the Handle protocol."""
        return self.delegation.upstreams if route.upstream else server_targets(route.servers)

    async def _ask(self, handle: Handle, route: Route, via: Sequence[str]) -> HandleRecord | None:
        """Ask the servers ``route`` designates, in turn, until one answers."""
        targets = self._targets(route)
        if not targets:
            raise UpstreamFailed(
                f"no server of prefix {route.zone} has a query interface this node speaks (HTTP, HTTPS, UDP or "
                f"TCP); {handle.text} cannot be resolved from here",
                handle=handle.text,
            )
        failures: list[str] = []
        loop = False
        for target in targets:
            try:
                if isinstance(target, Target):
                    record = await self.client.resolve(target, handle, via, case_sensitive=self._case_sensitive)
                else:
                    record = await self.handle_client.resolve(target, handle, via, case_sensitive=self._case_sensitive)
            except HopFailed as exc:
                metrics.DELEGATIONS.labels(exc.result).inc()
                if handle.is_prefix_handle and exc.code == ResponseCode.SERVER_NOT_RESPONSIBLE:
                    return None  # the top-level node knows nothing of this prefix
                log.info("delegation of %s: %s", handle.text, exc.detail)
                failures.append(exc.message)
                loop = loop or exc.result == "loop"
                continue
            metrics.DELEGATIONS.labels("answered" if record is not None else "not_found").inc()
            return record
        shown = "; ".join(failures)
        if loop:
            raise RecursionLoop(f"delegation loop while resolving {handle.text}: {shown}", handle=handle.text)
        where = "the top-level node" if route.zone == NA_PREFIX else f"the servers of prefix {route.zone}"
        # Always 502, also when every server timed out: a 504 would tell a server that
        # accepted the connection and kept silent from a closed port (see resolver.upstream.unreachable).
        raise UpstreamFailed(f"{where} did not answer for {handle.text}: {shown}", handle=handle.text)

    def prefetch(self, key: str, entry: Entry) -> None:
        entry.prefetching = True
        metrics.count("prefetches")
        task = asyncio.create_task(self._refresh(key))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh(self, key: str) -> None:
        try:
            await self._fetch(parse_handle(key, case_sensitive=self._case_sensitive), refresh=True)
        except (_StoreFailed, HandleError) as exc:
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

    def start(self) -> None:
        """Start the background work: packing cold cache entries."""
        self._sweeper = asyncio.create_task(self._sweep(), name="cache-sweeper")
        self._background.add(self._sweeper)

    async def _sweep(self) -> None:
        # A slice every tick: a pass over the hot entries takes about SWEEP_TICKS ticks.
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.local.sweep(max(SWEEP_MIN, len(self.local.entries) // SWEEP_TICKS))

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.client.close()


def _decoded(blob: Any) -> HandleRecord | None:
    try:
        return decode_record(blob)
    except ProtocolViolation:
        log.warning("redis: unreadable record in a cache entry; ignored")
        return None
