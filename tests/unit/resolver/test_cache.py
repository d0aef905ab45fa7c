"""The in-process cache tier and the Redis breaker, without processes."""

from __future__ import annotations

import time

import pytest

from protocol.records import HandleRecord, HandleValue
from resolver.cache.generations import Generations
from resolver.cache.local import MEMO_MAX, MEMO_OVERHEAD, Entry, LocalCache
from resolver.cache.redis_tier import Breaker
from resolver.cache.tiers import CachePolicy, record_ttl


def entry(n: int, *, gen: int = 0, ttl: float = 60.0) -> Entry:
    url = HandleValue(1, "URL", b"https://factory.example/p/%06d" % n)
    secret = HandleValue(300, "HS_SECKEY", b"hidden", permissions=0b1100)
    now = time.monotonic()
    return Entry(HandleRecord(f"88.118.1/P{n:06d}", (url, secret)), ttl, now + ttl, now + ttl + 100, n, gen)


def test_entries_and_bytes_stay_within_bounds() -> None:
    cache = LocalCache(max_entries=100, max_bytes=10 * 1024 * 1024)
    for n in range(1000):
        cache.put(f"88.118.1/P{n:06d}", entry(n))
        assert len(cache) <= 100
    small = LocalCache(max_entries=10_000, max_bytes=50_000)
    for n in range(1000):
        small.put(f"88.118.1/P{n:06d}", entry(n))
        assert small.bytes <= 50_000
    assert 0 < len(small) < 1000


def test_second_chance_keeps_entries_in_use() -> None:
    cache = LocalCache(max_entries=10, max_bytes=1 << 30)
    cache.put("hot", entry(0))
    for n in range(1, 50):
        cache.entries["hot"].used = True  # read between every insertion
        cache.put(f"k{n}", entry(n))
    assert "hot" in cache.entries


def test_unused_entries_are_packed_and_come_back_whole() -> None:
    cache = LocalCache(max_entries=10_000, max_bytes=1 << 30)
    originals = {f"88.118.1/P{n:06d}": entry(n, gen=n * 7) for n in range(500)}
    for spelling, e in originals.items():
        cache.put(spelling, e)
    hot_bytes = cache.bytes
    cache.entries["88.118.1/P000003"].used = True
    for _ in range(2):  # one pass clears the "used" marks, the next packs what stayed unused
        while cache.sweep(10_000) or cache._pass:
            pass
    assert len(cache.cold) >= 499 and len(cache) == 500
    assert cache.bytes < hot_bytes / 2
    back = cache.take_cold("88.118.1/P000042")
    assert back is not None and "88.118.1/P000042" in cache.entries
    want = originals["88.118.1/P000042"]
    assert (back.record, back.public, back.gen, back.slot) == (want.record, want.public, want.gen, want.slot)
    assert [v.index for v in back.public] == [1]
    assert back.expires == pytest.approx(want.expires) and back.stale_until == pytest.approx(want.stale_until)
    assert cache.take_cold("88.118.1/P000042") is None
    cache.drop("88.118.1/P000043")
    assert cache.take_cold("88.118.1/P000043") is None


def test_cold_entries_are_evicted_first() -> None:
    cache = LocalCache(max_entries=300, max_bytes=1 << 30)
    for n in range(300):
        cache.put(f"old{n}", entry(n))
    for _ in range(2):
        while cache.sweep(10_000) or cache._pass:
            pass
    for n in range(100):
        cache.put(f"new{n}", entry(n))
    assert len(cache) == 300
    assert all(f"new{n}" in cache.entries for n in range(100))


def test_generations_change_on_every_bump() -> None:
    gens = Generations(slots=1 << 10)
    slot = gens.slot("88.118/X")
    seen = {gens.words[slot]}
    for _ in range(100):
        gens.bump("88.118/X")
        assert gens.words[slot] not in seen
        seen.add(gens.words[slot])


def test_record_ttl_is_the_smallest_value_ttl_clamped() -> None:
    policy = CachePolicy(min_ttl=5, max_ttl=600)
    now = 1_000_000.0

    def rec(*ttls: tuple[int, bool]) -> HandleRecord:
        values = tuple(HandleValue(i + 1, "URL", b"x", ttl, absolute) for i, (ttl, absolute) in enumerate(ttls))
        return HandleRecord("88.118/X", values)

    assert record_ttl(rec((300, False), (100, False)), now, policy) == 100
    assert record_ttl(rec((86400, False)), now, policy) == 600
    assert record_ttl(rec((0, False)), now, policy) == 5
    assert record_ttl(rec((int(now) + 50, True)), now, policy) == 50


def test_breaker_opens_after_failures_and_probes_after_the_cooldown() -> None:
    breaker = Breaker(threshold=3, cooldown=0.05, max_cooldown=0.2)
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.failure()  # probe failed: open again, for longer
    assert breaker.cooldown == pytest.approx(0.1)
    time.sleep(0.11)
    assert breaker.allow()
    breaker.success()
    assert breaker.allow() and breaker.allow()


def test_memoised_encodings_are_counted_and_bounded() -> None:
    cache = LocalCache(max_entries=100, max_bytes=1 << 30)
    e = entry(1)
    cache.put("88.118.1/P000001", e)
    before = cache.bytes
    cache.set_rendered(e, "88.118.1/p000001", b"x" * 300)
    assert cache.bytes == before + 300 and e.rendered_for == "88.118.1/p000001"
    cache.set_rendered(e, "88.118.1/P000001", b"y" * 100)  # another spelling replaces the memo
    assert cache.bytes == before + 100 and e.rendered == b"y" * 100
    for n in range(MEMO_MAX + 5):
        cache.set_memo(e, ("q", n), b"z" * 10, 10)
    assert e.memo is not None and len(e.memo) == MEMO_MAX
    assert cache.bytes == before + 100 + MEMO_MAX * (10 + MEMO_OVERHEAD)
    cache.drop("88.118.1/P000001")
    assert cache.bytes == 0


def test_memoised_encodings_count_against_the_byte_bound() -> None:
    cache = LocalCache(max_entries=1000, max_bytes=20_000)
    for n in range(10):
        cache.put(f"k{n}", entry(n))
    for e in list(cache.entries.values()):
        cache.set_rendered(e, e.key, b"b" * 3000)
    assert cache.bytes <= 20_000 and len(cache.entries) < 10


def packed_all(cache: LocalCache) -> None:
    for _ in range(2):  # one pass clears the "used" marks, the next packs what stayed unused
        while cache.sweep(10_000) or cache._pass:
            pass


def test_a_cold_entry_comes_back_with_its_encodings_and_packs_again_for_free() -> None:
    cache = LocalCache(max_entries=10_000, max_bytes=1 << 30)
    originals = {f"88.118.1/P{n:06d}": entry(n) for n in range(100)}
    for spelling, e in originals.items():
        cache.put(spelling, e)
        cache.set_rendered(e, spelling.lower(), b'{"handle":"%s"}' % spelling.encode())
        cache.set_answer(e, b"v2.10", b"\x02\x0a answer of " + spelling.encode(), 1234.5)
    packed_all(cache)
    key = "88.118.1/P000042"
    first = cache.cold[key]

    back = cache.take_cold(key)
    assert back is not None and back._record is None  # the record stays packed until asked for
    assert (back.rendered, back.rendered_for) == (b'{"handle":"88.118.1/P000042"}', "88.118.1/p000042")
    assert back.answers == {b"v2.10": (b"\x02\x0a answer of 88.118.1/P000042", 1234.5)}
    assert back.record == originals[key].record and back.public == originals[key].public
    assert cache.bytes == sum(cache.cold_cost(k, p) for k, p in cache.cold.items()) + cache.cost(key, back)

    packed_all(cache)
    assert cache.cold[key] is first  # unchanged: not deflated again
    again = cache.take_cold(key)
    assert again is not None
    cache.set_answer(again, b"v2.1", b"another form", 99.0)
    assert again.packed is None  # its cold form no longer holds every encoding
    packed_all(cache)
    third = cache.take_cold(key)
    assert third is not None and third.answers is not None and set(third.answers) == {b"v2.10", b"v2.1"}


def test_a_cold_entry_of_a_changed_handle_is_dropped_unread() -> None:
    cache = LocalCache(max_entries=10_000, max_bytes=1 << 30)
    for n in range(100):
        cache.put(f"k{n}", entry(n, gen=5))
    packed_all(cache)
    words = [5] * 100
    words[42] = 6  # entry(n)'s slot is n
    assert cache.take_cold("k42", words) is None and "k42" not in cache.cold
    assert cache.take_cold("k41", words) is not None


def test_the_byte_bound_packs_hot_entries_before_dropping_any() -> None:
    cache = LocalCache(max_entries=100_000, max_bytes=600 * 1000)
    assert cache.max_bytes // LocalCache.cost("88.118.1/P000000", entry(0)) < 500  # fewer than half fit hot
    for n in range(1000):
        cache.put(f"88.118.1/P{n:06d}", entry(n))
        assert cache.bytes <= cache.max_bytes
    assert len(cache) == 1000 and len(cache.cold) > 500
    assert cache.take_cold("88.118.1/P000003") is not None
    small = LocalCache(max_entries=100_000, max_bytes=50_000)  # not even the cold forms fit
    for n in range(1000):
        small.put(f"88.118.1/P{n:06d}", entry(n))
    assert small.bytes <= 50_000 and 0 < len(small) < 1000


def test_a_cold_entry_is_served_in_place_once_then_made_hot_and_keeps_what_is_added() -> None:
    cache = LocalCache(max_entries=10_000, max_bytes=1 << 30)
    for n in range(100):
        cache.put(f"k{n}", entry(n))
    packed_all(cache)
    words = [0] * 100
    before = cache.bytes

    first = cache.cold_entry("k5", words)
    assert first is not None and first.record == entry(5).record
    assert "k5" in cache.cold and "k5" not in cache.entries and cache.bytes == before  # no churn
    second = cache.cold_entry("k5", words)
    assert second is not None and "k5" in cache.entries and "k5" not in cache.cold

    copy = cache.cold_entry("k6", words)  # served in place; then a front-end memoises beside it
    assert copy is not None
    cache.set_answer(copy, b"form", b"answer", 1.0)
    assert cache.entries["k6"] is copy and "k6" not in cache.cold
    assert cache.bytes == sum(cache.cold_cost(k, p) for k, p in cache.cold.items()) + sum(
        cache.cost(k, e) for k, e in cache.entries.items()
    )
    packed_all(cache)
    assert cache.take_cold("k6") is not None and cache.entries["k6"].answers == {b"form": (b"answer", 1.0)}

    words[7] = 1  # the handle changed: its cold form is dropped unread
    assert cache.cold_entry("k7", words) is None and "k7" not in cache.cold


def test_a_cold_answer_is_the_memoised_one_first_then_the_entry_is_made_hot() -> None:
    cache = LocalCache(max_entries=10_000, max_bytes=1 << 30)
    now = time.monotonic()
    for n in range(100):
        e = entry(n, ttl=60.0)
        cache.put(f"k{n}", e)
        cache.set_answer(e, b"v2.10", b"answer %d" % n, now + 30)
        cache.set_answer(e, b"v2.1", b"old answer %d" % n, now + 30)
    packed_all(cache)
    words = [0] * 100
    before = cache.bytes

    assert cache.cold_answer("k5", b"v2.1", words, now) == b"old answer 5"
    assert "k5" in cache.cold and "k5" not in cache.entries and cache.bytes == before  # no churn
    assert cache.cold_answer("k5", b"v2.1", words, now) is None  # hit before: the full path ...
    second = cache.cold_entry("k5", words)
    assert second is not None and "k5" in cache.entries  # ... makes it hot, as cold_entry's second hit
    assert second.answers is not None and second.answers[b"v2.10"][0] == b"answer 5"

    assert cache.cold_answer("k6", b"v3.0", words, now) is None  # no answer of that form
    assert cache.cold_answer("k7", b"v2.10", words, now + 31) is None  # the answer is due to be made again
    assert cache.cold_answer("k8", b"v2.10", words, now + 55) is None  # the entry is due a refresh
    words[9] = 1
    assert cache.cold_answer("k9", b"v2.10", words, now) is None  # the handle changed
    assert cache.cold_answer("k10", b"v2.10", words, now) == b"answer 10"
    assert cache.cold_answer("missing", b"v2.10", words, now) is None
