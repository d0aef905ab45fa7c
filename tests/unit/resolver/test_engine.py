"""The resolution engine in process: a store in a dict, a clock the test moves, no sockets.

Like dnspython's tests of ``_Resolution``, each test drives ``ResolutionEngine`` through the
calls a front-end makes and looks at what a front-end sees (the entry's record, its public
values, whether it is stale) and at what the store was asked. The node serves prefix
88.118 without recursion, so every handle here is read from the store and nothing leaves
the process. The engine's clocks are the test's; only the store timeout and the cache
sweeper run on the event loop's own time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from protocol.errors import HandleNotFound, StoreUnavailable
from protocol.identifiers import Handle
from protocol.records import HandleRecord, HandleValue
from resolver.cache.local import ZDICT_SAMPLES, Entry
from resolver.cache.tiers import STALE_REPLY_TTL, SWEEP_INTERVAL, CachePolicy
from resolver.engine import ResolutionEngine
from tests.support.memory_store import MemoryStore, Read

NODE = "88.118"
POLICY = CachePolicy(min_ttl=5, max_ttl=600, negative_ttl=30, stale_window=300)
SHORT_STORE_TIMEOUT = 0.2  # seconds of real time: for the tests whose store stalls


class Clock:
    """The engine's monotonic and wall clocks, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.epoch = 1_800_000_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.epoch

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.epoch += seconds


def record(suffix: str, *ttls: int, data: bytes = b"https://factory.example/one") -> HandleRecord:
    """``88.118/<suffix>``: a public URL value per TTL (100 s if none given) and a secret."""
    ttls = ttls or (100,)
    urls = [HandleValue(i, "URL", data, ttl=ttl) for i, ttl in enumerate(ttls, 1)]
    secret = HandleValue(300, "HS_SECKEY", b"hidden", ttl=max(ttls), permissions=0b1100)
    return HandleRecord(f"{NODE}/{suffix}", (*urls, secret))


def key(suffix: str) -> str:
    return f"{NODE}/{suffix.upper()}"


async def turns(n: int = 20) -> None:
    """Let the loop run ``n`` turns: far more than a lookup needs to reach the store."""
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def make_engine(store: MemoryStore, clock: Clock) -> AsyncIterator[Callable[..., ResolutionEngine]]:
    """Engines on the test's store and clock (POLICY, but for the store timeout), closed after it."""
    made: list[ResolutionEngine] = []

    def make(store_timeout: float = POLICY.store_timeout) -> ResolutionEngine:
        policy = dataclasses.replace(POLICY, store_timeout=store_timeout)
        engine = ResolutionEngine(store, node_prefix=NODE, policy=policy, monotonic=clock.monotonic, wall=clock.time)
        made.append(engine)
        return engine

    yield make
    store.release()  # a read the test left waiting ends, so no task outlives the test
    for engine in made:
        await engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., ResolutionEngine]) -> ResolutionEngine:
    return make_engine()


def handle(engine: ResolutionEngine, suffix: str) -> Handle:
    return engine.parse(f"{NODE}/{suffix}")


async def lookup(engine: ResolutionEngine, suffix: str) -> Entry:
    """``engine.lookup`` of ``88.118/<suffix>``; one that hangs fails the test, not the run."""
    async with asyncio.timeout(5):
        return await engine.lookup(handle(engine, suffix))


async def lookup_in_flight(engine: ResolutionEngine, store: MemoryStore) -> asyncio.Task[Entry]:
    """A lookup of ``88.118/a`` (stored) whose store read has begun and waits for ``store.release``."""
    store.put(record("a"))
    store.block()
    task = asyncio.create_task(lookup(engine, "a"))
    await store.reads_reach(1)
    return task


# Hits, misses and TTLs ------------------------------------------------------------------


async def test_a_miss_reads_the_store_once_then_lookups_are_hits(
    engine: ResolutionEngine, store: MemoryStore, clock: Clock
) -> None:
    store.put(record("a"))
    entry = await lookup(engine, "a")
    assert entry.record == record("a") and not entry.stale
    assert [v.type for v in entry.public] == ["URL"]  # the secret is not public
    assert store.keys_read() == [[key("a")]]

    clock.advance(50)
    assert await lookup(engine, "A") is entry  # every spelling shares the entry
    assert engine.fresh(key("a")) is entry
    assert await engine.resolve(handle(engine, "a")) == record("a")
    assert store.keys_read() == [[key("a")]]


async def test_concurrent_misses_of_one_handle_share_one_store_read(
    engine: ResolutionEngine, store: MemoryStore
) -> None:
    first = await lookup_in_flight(engine, store)
    # The others arrive turns later, while the read is in flight: reads are batched only
    # within one turn, so only coalescing can join them to it.
    others = [asyncio.create_task(lookup(engine, "a")) for _ in range(9)]
    await turns()
    store.release()
    entries = await asyncio.gather(first, *others)
    assert entries[0].record == record("a")
    assert all(e is entries[0] for e in entries)
    assert store.keys_read() == [[key("a")]]


async def test_misses_of_different_handles_in_one_turn_make_one_get_many(
    engine: ResolutionEngine, store: MemoryStore
) -> None:
    for suffix in "abc":
        store.put(record(suffix))
    entries = await asyncio.gather(*(lookup(engine, s) for s in "abcd"))
    assert [e.record for e in entries] == [record("a"), record("b"), record("c"), None]
    assert len(store.reads) == 1
    assert sorted(store.reads[0].keys) == [key(s) for s in "abcd"]


@pytest.mark.parametrize(
    ("ttls", "cached_for"),
    [((120, 80), 80), ((5000,), 600), ((1,), 5)],
    ids=["shortest-value", "clamped-to-max-ttl", "raised-to-min-ttl"],
)
async def test_an_entry_lives_for_the_records_shortest_ttl_clamped(
    engine: ResolutionEngine, store: MemoryStore, clock: Clock, ttls: tuple[int, ...], cached_for: int
) -> None:
    store.put(record("a", *ttls))
    entry = await lookup(engine, "a")
    assert entry.ttl == cached_for
    early = cached_for * 0.85  # before the last tenth: no prefetch reads the store
    clock.advance(early)
    assert engine.fresh(key("a")) is entry
    clock.advance(cached_for - early)
    assert engine.fresh(key("a")) is None
    again = await lookup(engine, "a")
    assert again is not entry and again.record == record("a", *ttls)
    assert store.keys_read() == [[key("a")], [key("a")]]


async def test_not_found_is_cached_for_the_negative_ttl(
    engine: ResolutionEngine, store: MemoryStore, clock: Clock
) -> None:
    missing = await lookup(engine, "a")
    assert missing.record is None and missing.ttl == POLICY.negative_ttl
    store.put(record("a"))  # created without telling the engine: only the expiry can show it
    clock.advance(20)
    with pytest.raises(HandleNotFound):
        await engine.resolve(handle(engine, "a"))
    assert len(store.reads) == 1

    clock.advance(POLICY.negative_ttl - 20)
    assert await engine.resolve(handle(engine, "a")) == record("a")
    assert len(store.reads) == 2


# Prefetch ------------------------------------------------------------------------------


async def test_a_hit_in_the_last_tenth_of_the_ttl_refreshes_once_in_the_background(
    engine: ResolutionEngine, store: MemoryStore, clock: Clock
) -> None:
    store.put(record("a"))  # TTL 100 s
    entry = await lookup(engine, "a")
    store.put(record("a", data=b"two"))  # unannounced: only a read of the store finds it
    store.block()
    clock.advance(91)
    assert await lookup(engine, "a") is entry  # while the store is blocked: no waiting for the refresh
    await store.reads_reach(2)
    assert engine.fresh(key("a")) is entry  # another hit meanwhile reads nothing more
    await turns()
    assert len(store.reads) == 2

    store.release()
    await turns()  # the refresh lands
    clock.advance(50)  # past the old entry's expiry
    refreshed = engine.fresh(key("a"))
    assert refreshed is not None and refreshed.record == record("a", data=b"two")
    assert len(store.reads) == 2


async def test_a_refresh_that_fails_is_not_retried_by_every_hit(
    engine: ResolutionEngine, store: MemoryStore, clock: Clock
) -> None:
    store.put(record("a"))
    entry = await lookup(engine, "a")
    store.fail = StoreUnavailable("disk I/O error (injected by the test)")
    clock.advance(91)
    for _ in range(3):  # hits in separate turns: the refresh of the first one has failed by the next
        assert engine.fresh(key("a")) is entry
        await turns()
    assert len(store.reads) == 2


async def test_a_write_during_a_refresh_is_not_undone_by_it(
    engine: ResolutionEngine, store: MemoryStore, clock: Clock
) -> None:
    store.put(record("a"))
    await lookup(engine, "a")
    store.block()
    clock.advance(91)
    assert engine.fresh(key("a")) is not None  # starts the refresh; its read sees the old record
    await store.reads_reach(2)
    await store.replace(key("a"), record("a", data=b"two"))  # committed: the listeners were told
    store.release()
    await turns()  # the refresh lands, with what it read before the write

    assert engine.fresh(key("a")) is None
    after = await lookup(engine, "a")
    assert after.record == record("a", data=b"two")
    assert store.reads[-1] == Read([key("a")], primary=True)  # written just now: not from a replica


# Invalidation --------------------------------------------------------------------------

Tell = Callable[[ResolutionEngine, MemoryStore, HandleRecord], Awaitable[None]]


async def written_here(engine: ResolutionEngine, store: MemoryStore, new: HandleRecord) -> None:
    await store.replace(key("a"), new)  # the store's write listener is the engine's


async def changed(engine: ResolutionEngine, store: MemoryStore, new: HandleRecord) -> None:
    store.put(new)
    await engine.changed([key("a")])


async def changed_elsewhere(engine: ResolutionEngine, store: MemoryStore, new: HandleRecord) -> None:
    store.put(new)
    engine.changed_elsewhere([key("a")])


@pytest.mark.parametrize("tell", [written_here, changed, changed_elsewhere])
async def test_a_change_is_seen_by_the_next_lookup(engine: ResolutionEngine, store: MemoryStore, tell: Tell) -> None:
    store.put(record("a"))
    store.put(record("b"))
    await asyncio.gather(lookup(engine, "a"), lookup(engine, "b"))
    reads = len(store.reads)
    await tell(engine, store, record("a", data=b"two"))
    assert engine.fresh(key("a")) is None
    assert engine.fresh(key("b")) is not None  # only the changed handle is dropped
    after = await lookup(engine, "a")
    assert after.record == record("a", data=b"two")
    assert store.reads[reads:] == [Read([key("a")], primary=True)]


async def test_a_lookup_after_a_write_does_not_join_a_read_begun_before_it(
    engine: ResolutionEngine, store: MemoryStore
) -> None:
    before = await lookup_in_flight(engine, store)
    await store.replace(key("a"), record("a", data=b"two"))  # the writer is answered here
    after = asyncio.create_task(lookup(engine, "a"))
    await turns()
    store.release()
    assert (await before).record == record("a")  # it began before the write
    assert (await after).record == record("a", data=b"two")


# Serve-stale (RFC 8767) ----------------------------------------------------------------

BreakStore = Callable[[MemoryStore], None]


def unavailable(store: MemoryStore) -> None:
    store.fail = StoreUnavailable("disk I/O error (injected by the test)")


def stalled(store: MemoryStore) -> None:
    store.block()  # for longer than the store timeout


def heal(store: MemoryStore) -> None:
    store.fail = None
    store.release()


@pytest.mark.parametrize("break_store", [unavailable, stalled])
async def test_an_expired_answer_is_served_stale_while_the_store_fails(
    make_engine: Callable[..., ResolutionEngine], store: MemoryStore, clock: Clock, break_store: BreakStore
) -> None:
    engine = make_engine(store_timeout=SHORT_STORE_TIMEOUT)
    store.put(record("a", 100, 200))
    entry = await lookup(engine, "a")
    clock.advance(100)
    break_store(store)
    stale = await lookup(engine, "a")
    assert stale.stale and stale.ttl == STALE_REPLY_TTL and stale.record is not None
    assert entry.record is not None
    assert [v._replace(ttl=0) for v in stale.record.values] == [v._replace(ttl=0) for v in entry.record.values]
    assert {(v.ttl, v.ttl_absolute) for v in stale.record.values} == {(STALE_REPLY_TTL, False)}
    assert [(v.type, v.ttl) for v in stale.public] == [("URL", STALE_REPLY_TTL)] * 2
    assert len(store.reads) == 2

    clock.advance(STALE_REPLY_TTL - 1)
    assert await lookup(engine, "a") is stale  # the store is not asked meanwhile
    assert len(store.reads) == 2
    clock.advance(1)
    assert (await lookup(engine, "a")).stale
    assert len(store.reads) == 3

    heal(store)
    clock.advance(STALE_REPLY_TTL)
    back = await lookup(engine, "a")
    assert not back.stale and back.record == record("a", 100, 200)


@pytest.mark.parametrize("break_store", [unavailable, stalled])
async def test_the_failure_is_raised_past_the_stale_window_or_with_no_answer_to_stand_in(
    make_engine: Callable[..., ResolutionEngine], store: MemoryStore, clock: Clock, break_store: BreakStore
) -> None:
    engine = make_engine(store_timeout=SHORT_STORE_TIMEOUT)
    store.put(record("a"))
    store.put(record("b"))
    await asyncio.gather(lookup(engine, "a"), lookup(engine, "b"))
    await store.replace(key("b"), record("b", data=b"two"))
    break_store(store)
    with pytest.raises(StoreUnavailable):
        await lookup(engine, "b")  # what was cached before the write may not stand in for it
    with pytest.raises(StoreUnavailable):
        await lookup(engine, "c")  # never seen

    clock.advance(100 + POLICY.stale_window - 1)  # the entry expired at 100 s
    assert (await lookup(engine, "a")).stale
    clock.advance(1)
    with pytest.raises(StoreUnavailable):
        await lookup(engine, "a")


# The cold tier and the front-ends' encodings --------------------------------------------


async def test_an_entry_packed_into_the_cold_tier_is_answered_without_a_store_read(
    engine: ResolutionEngine, store: MemoryStore, clock: Clock
) -> None:
    # The sweeper packs only once it has a deflate dictionary made of ZDICT_SAMPLES entries.
    suffixes = [f"p{n}" for n in range(ZDICT_SAMPLES)]
    for suffix in suffixes:
        store.put(record(suffix))
    entries = await asyncio.gather(*(lookup(engine, s) for s in suffixes))
    engine.remember_rendered(entries[7], "88.118/p7", b'{"handle":"88.118/p7"}')
    engine.remember_answer(entries[7], b"form", b"\x00wire answer", 600.0)
    reads = len(store.reads)
    engine.start()
    await asyncio.sleep(0)  # the sweeper's first tick is timed from here ...
    await asyncio.sleep(2 * SWEEP_INTERVAL)  # ... so it comes before this wakes up
    local = engine._tiers.local
    assert key("p7") in local.cold and key("p7") not in local.entries  # not expired, yet not hot: packed

    # The fast path's read: the encodings at once, the record when asked.
    back = engine.fresh(key("p7"))
    assert back is not None and back is not entries[7]
    assert key("p7") in local.cold and key("p7") not in local.entries  # served from the cold form, left there
    again = engine.fresh(key("p7"))
    assert again is not None and key("p7") in local.entries and key("p7") not in local.cold  # asked again: hot
    assert (back.rendered, back.rendered_for) == (b'{"handle":"88.118/p7"}', "88.118/p7")
    assert back.answers == {b"form": (b"\x00wire answer", 600.0)}
    assert back.found and back.record == record("p7") and [v.type for v in back.public] == ["URL"]
    assert len(store.reads) == reads

    clock.advance(100)  # a cold entry keeps its expiry
    assert (await lookup(engine, "p8")).record == record("p8")
    assert store.keys_read()[reads:] == [[key("p8")]]


async def test_encodings_are_kept_beside_the_entry_until_it_changes(
    engine: ResolutionEngine, store: MemoryStore
) -> None:
    store.put(record("a"))
    entry = await lookup(engine, "a")
    engine.remember_rendered(entry, "88.118/a", b'{"handle":"88.118/a"}')
    engine.remember(entry, ("handle", 0), b"\x00wire", 5)
    hit = await lookup(engine, "a")
    assert (hit.rendered, hit.rendered_for) == (b'{"handle":"88.118/a"}', "88.118/a")
    assert hit.memo == {("handle", 0): b"\x00wire"}

    await store.replace(key("a"), record("a", data=b"two"))
    new = await lookup(engine, "a")
    assert new.record == record("a", data=b"two")
    assert (new.rendered, new.rendered_for, new.memo) == (b"", None, None)
